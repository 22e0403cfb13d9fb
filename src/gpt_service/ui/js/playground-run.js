// The playground's requests: streamed chat (/v1/chat/completions), streamed generation
// (/generate/stream) and /batch, each measured (time to first token, tokens per second).

import { ApiError, events, post } from "./api.js";
import { fmt } from "./dom.js";

export class Meter {
  constructor() {
    this.start = performance.now();
    this.first = null;
  }

  mark() {
    if (this.first === null) this.first = performance.now();
  }

  get seconds() {
    return (performance.now() - this.start) / 1000;
  }

  // "12 prompt + 64 completion tokens · 0.85 s · 75.3 tok/s · first token 0.05 s · length"
  summary({ promptTokens, completionTokens, finish, model }) {
    const seconds = this.seconds;
    const parts = [];
    if (completionTokens !== undefined) {
      parts.push(`${fmt.int(promptTokens)} prompt + ${fmt.int(completionTokens)} completion tokens`);
    }
    parts.push(`${seconds.toFixed(2)} s`);
    if (completionTokens && seconds > 0) parts.push(`${(completionTokens / seconds).toFixed(1)} tok/s`);
    if (this.first !== null) parts.push(`first token ${((this.first - this.start) / 1000).toFixed(2)} s`);
    if (finish) parts.push(`finish: ${finish}`);
    if (model) parts.push(model);
    return parts.join(" · ");
  }
}

// Streams one chat answer; onText gets each increment (tool calls are shown as text, e.g.
// `→ get_weather({"city": "北京"})`). Returns the usage and finish reason.
export async function streamChat({ model, messages, sampling, tools, signal, onText }) {
  const body = {
    model: model || undefined,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    ...sampling,
    ...(tools || {}),
  };
  const outcome = { finish: null, usage: null, model: null };
  for await (const ev of events("POST", "/v1/chat/completions", { json: body, signal })) {
    if (ev.data === "[DONE]") break;
    const chunk = ev.json();
    if (chunk.error) throw new ApiError(500, chunk.error.message || "generation failed");
    outcome.model = chunk.model || outcome.model;
    for (const choice of chunk.choices || []) {
      if (choice.delta && choice.delta.content) onText(choice.delta.content);
      for (const call of (choice.delta && choice.delta.tool_calls) || []) {
        const fn = call.function || {};
        if (fn.name) onText(`${call.index ? ")\n" : ""}→ ${fn.name}(`);
        if (fn.arguments) onText(fn.arguments);
      }
      if (choice.delta && choice.delta.tool_calls) outcome.calls = true;
      if (choice.finish_reason && outcome.calls) onText(")");
      if (choice.finish_reason) outcome.finish = choice.finish_reason;
    }
    if (chunk.usage) outcome.usage = chunk.usage;
  }
  return outcome;
}

// Streams /generate/stream (the native API): `message` increments, then `done` or `error`.
export async function streamGenerate({ model, prompt, sampling, signal, onText, onTokens }) {
  const body = { prompt, model_name: model || undefined, ...sampling };
  for await (const ev of events("POST", "/generate/stream", { json: body, signal })) {
    const data = ev.json();
    if (ev.event === "error") throw new ApiError(500, data.detail || "generation failed");
    if (ev.event === "done") return data;
    if (data.text) onText(data.text);
    if (onTokens) onTokens(data.tokens_generated);
  }
  throw new ApiError(0, "the stream ended without a result");
}

export async function runBatch({ model, prompts, sampling }) {
  return post("/batch", { prompts, model_name: model || undefined, ...sampling });
}

// The sampling controls' values, as request fields (blank optional fields are left out).
export function readSampling(form) {
  const value = (name) => form.elements[name].value.trim();
  const number = (name) => (value(name) === "" ? undefined : Number(value(name)));
  const stops = value("stop").split("\n").map((s) => s.trim()).filter(Boolean);
  return {
    max_tokens: number("max_tokens"),
    temperature: number("temperature"),
    top_p: number("top_p"),
    top_k: number("top_k"),
    repetition_penalty: number("repetition_penalty"),
    min_tokens: number("min_tokens"),
    seed: number("seed"),
    stop: stops.length ? stops : undefined,
    response_format: responseFormat(value("json_schema")),
  };
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `${what} is not valid JSON: ${err.message}`);
  }
}

// The JSON-schema box: blank = free text, "json" = any JSON object, else a schema.
function responseFormat(text) {
  if (!text) return undefined;
  if (text === "json") return { type: "json_object" };
  const schema = parseJson(text, "the JSON schema");
  return { type: "json_schema", json_schema: { name: "playground", schema } };
}

// The tools box: a list of functions (bare or as {type: "function", function}) and the choice.
export function readTools(form) {
  const text = form.elements.tools.value.trim();
  if (!text) return undefined;
  const list = parseJson(text, "the tools");
  const tools = (Array.isArray(list) ? list : [list]).map((t) =>
    (t.type === "function" && t.function ? t : { type: "function", function: t }));
  return { tools, tool_choice: form.elements.tool_choice.value };
}
