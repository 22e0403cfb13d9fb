// Calls to the service: JSON requests and Server-Sent Events over fetch, with the API key.
//
// The key lives in localStorage and goes out as "Authorization: Bearer <key>". A 401
// raises the "api-key-required" window event so the shell can ask for a key.

const KEY_STORAGE = "gpt-service.api-key";

export function getKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Native errors are {"detail": str | [pydantic errors]}, /v1 errors {"error": {"message"}}.
export function errorMessage(status, body) {
  const detail = body && (body.detail ?? body.error);
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`)
      .join("; ");
  }
  if (detail && typeof detail.message === "string") return detail.message;
  return `HTTP ${status}`;
}

function buildUrl(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function send(method, path, { json, query, signal } = {}) {
  const headers = { Accept: "application/json, text/event-stream" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, signal };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(buildUrl(path, query), init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `cannot reach the server (${err.message})`);
  }
  if (response.ok) return response;
  let body = null;
  try {
    body = await response.json();
  } catch {
    // a proxy's HTML error page: the status says enough
  }
  const message = errorMessage(response.status, body);
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent("api-key-required", { detail: message }));
  }
  throw new ApiError(response.status, message);
}

export async function request(method, path, options) {
  const response = await send(method, path, options);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, query, signal) => request("GET", path, { query, signal });
export const post = (path, json, query) => request("POST", path, { json, query });

// Server-Sent Events of a GET or POST, as {event, data, json()} objects.
export async function* events(method, path, { json, query, signal } = {}) {
  const response = await send(method, path, { json, query, signal });
  yield* parseEvents(response.body);
}

// Lines of an NDJSON (or plain JSON) response body, parsed.
export async function* jsonLines(method, path, { json, query, signal } = {}) {
  const response = await send(method, path, { json, query, signal });
  for await (const line of lines(response.body)) {
    if (line.trim()) yield JSON.parse(line);
  }
}

async function* lines(body) {
  const reader = body.getReader();
  // stream: true keeps a multi-byte character split across chunks (Chinese) intact.
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n")) >= 0) {
        yield buffer.slice(0, cut).replace(/\r$/, "");
        buffer = buffer.slice(cut + 1);
      }
    }
    buffer += decoder.decode();
    if (buffer) yield buffer;
  } finally {
    reader.cancel().catch(() => {});
  }
}

// SSE framing: "field: value" lines, events separated by a blank line, ":" comments (pings).
export async function* parseEvents(body) {
  let event = "message";
  let data = [];
  for await (const line of lines(body)) {
    if (line === "") {
      if (data.length) yield makeEvent(event, data.join("\n"));
      event = "message";
      data = [];
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) yield makeEvent(event, data.join("\n"));
}

function makeEvent(event, data) {
  return { event, data, json: () => JSON.parse(data) };
}
