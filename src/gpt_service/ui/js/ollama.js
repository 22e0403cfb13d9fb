// Ollama: the upstream's state and counters, its models, and a pull with live progress.

import { events, get } from "./api.js";
import {
  badge, busy, button, card, fmt, h, progressBar, replace, setProgress, table, toast,
} from "./dom.js";

let ui = {};

function statsView(s) {
  const rows = [
    ["Upstream", s.base_url],
    ["Version", s.version || "–"],
    ["Models available", fmt.int(s.models_available)],
    ["Running", s.models_running.length ? s.models_running.join(", ") : "none"],
    ["Proxied requests", `${fmt.int(s.requests)} (${fmt.int(s.errors)} errors)`],
    ["Tokens", `${fmt.int(s.prompt_tokens)} prompt + ${fmt.int(s.completion_tokens)} completion`],
    ["Mean latency", s.mean_latency_ms === null ? "–" : `${fmt.num(s.mean_latency_ms, 1)} ms`],
  ];
  return h("div", {},
    h("p", {}, badge(s.reachable ? "reachable" : "unreachable"),
      s.reachable ? null : h("span", { class: "muted", text: ` nothing answers at ${s.base_url}` })),
    h("div", { class: "facts" }, rows.map(([k, v]) => h("div", {}, h("span", { class: "k", text: k }),
      h("span", { class: "v", text: v })))));
}

function modelsView(models) {
  return table([
    { label: "Name", render: (m) => h("strong", { text: m.name }) },
    { label: "Size", render: (m) => fmt.bytes(m.size), class: "num" },
    { label: "Family", render: (m) => m.family || "–" },
    { label: "Parameters", render: (m) => m.parameter_size || "–" },
    { label: "Quantization", render: (m) => m.quantization_level || "–" },
    { label: "Format", render: (m) => m.format || "–" },
    { label: "Modified", render: (m) => fmt.time(m.modified_at) },
  ], models, { empty: "The upstream has no model yet: pull one below.", testid: "ollama-models" });
}

async function refresh() {
  let stats;
  try {
    stats = await get("/ollama/stats");
  } catch (err) {
    replace(ui.stats, h("p", { class: "error", text: err.message }));
    replace(ui.models, h("p", { class: "muted", text: "Not available." }));
    return;
  }
  replace(ui.stats, statsView(stats));
  ui.pull.disabled = !stats.reachable;
  if (!stats.reachable) {
    // Asking for the models would only get a 503: say why instead.
    replace(ui.models, h("p", { class: "muted",
      text: "Start Ollama (or set GPT_SERVICE_OLLAMA_BASE_URL) to see its models." }));
    return;
  }
  try {
    replace(ui.models, modelsView((await get("/ollama/models")).models));
  } catch (err) {
    replace(ui.models, h("p", { class: "error", text: err.message }));
  }
}

// SSE progress: {status, digest, total, completed, percent}..., then `done` or `error`.
async function pull(name) {
  const bar = progressBar(0, "pull-progress");
  const status = h("span", { class: "muted", text: "starting…", "data-testid": "pull-status" });
  replace(ui.pullProgress, h("div", { class: "row progress-row" }, bar, status));
  for await (const ev of events("POST", "/ollama/pull", { query: { model_name: name, stream: true } })) {
    const data = ev.json();
    if (ev.event === "error") throw new Error(data.detail);
    if (ev.event === "done") {
      setProgress(bar, 100);
      status.textContent = `pulled ${name}${data.total_bytes ? ` (${fmt.bytes(data.total_bytes)})` : ""}`;
      return;
    }
    if (data.percent !== undefined) setProgress(bar, data.percent);
    status.textContent = data.total
      ? `${data.status} · ${fmt.bytes(data.completed || 0)} / ${fmt.bytes(data.total)}`
      : data.status;
  }
}

function pullForm() {
  const input = h("input", { name: "model_name", required: true, placeholder: "e.g. llama3.2 or qwen2.5:0.5b",
    "data-testid": "pull-name" });
  ui.pull = h("button", { type: "submit", class: "primary", text: "Pull", "data-testid": "pull-submit" });
  const form = h("form", { class: "row" }, input, ui.pull);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = input.value.trim();
    const ok = await busy(ui.pull, async () => { await pull(name); return true; }, "Pulling…");
    if (ok) { toast(`pulled ${name}`, "info"); refresh(); }
  });
  return form;
}

function mount(el) {
  ui.stats = h("div", { text: "Loading…", "data-testid": "ollama-stats" });
  ui.models = h("div");
  ui.pullProgress = h("div");
  const head = h("div", { class: "card-head" }, h("h2", { text: "Upstream" }),
    button("Refresh", () => refresh(), "ghost"));
  el.append(card(head, ui.stats), card("Models on the upstream", ui.models),
    card("Pull a model", pullForm(), ui.pullProgress));
}

export default { id: "ollama", title: "Ollama", mount, show: refresh, hide() {} };
