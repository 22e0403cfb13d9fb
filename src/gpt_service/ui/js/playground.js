// Playground: pick a model (or model:adapter), chat with streamed answers, generate from a
// raw prompt, or run a batch; sampling controls on the side, token counts and speed below.

import { loadedModels, modelOptions } from "./catalog.js";
import {
  $, busy, button, card, field, fmt, h, numberInput, replace, select, setOptions, table,
  takeOpenParams, toast,
} from "./dom.js";
import {
  Meter, readSampling, readTools, runBatch, streamChat, streamGenerate,
} from "./playground-run.js";

const MODES = [["chat", "Chat"], ["generate", "Generate"], ["batch", "Batch"]];
const state = { mode: "chat", messages: [], controller: null };
let ui = {};

function controls() {
  const temperature = numberInput("temperature", 0.7, { min: 0, max: 2, step: 0.05 });
  const slider = h("input", { type: "range", min: "0", max: "2", step: "0.05", value: "0.7",
    "aria-label": "temperature slider" });
  slider.addEventListener("input", () => { temperature.value = slider.value; });
  temperature.addEventListener("input", () => { slider.value = temperature.value; });
  ui.model = select("model", [{ value: "", label: "current model" }]);
  ui.model.dataset.testid = "model-select";
  ui.system = h("textarea", { name: "system", rows: 2, placeholder: "optional system prompt" });
  ui.form = h("form", { class: "controls", on: { submit: (e) => e.preventDefault() } },
    field("Model", h("div", { class: "row" }, ui.model,
      button("↻", () => refreshModels(), "ghost icon", { title: "reload the model list" }))),
    field("Max tokens", numberInput("max_tokens", 256, { min: 1, step: 1 })),
    field("Temperature", h("div", { class: "row" }, slider, temperature), "0 = greedy"),
    h("div", { class: "grid-2" },
      field("Top-p", numberInput("top_p", 0.9, { min: 0.01, max: 1, step: 0.05 })),
      field("Top-k", numberInput("top_k", 0, { min: 0, step: 1 }), "0 = off")),
    h("div", { class: "grid-2" },
      field("Repeat penalty", numberInput("repetition_penalty", 1.0, { min: 0.1, max: 10, step: 0.05 })),
      field("Min tokens", numberInput("min_tokens", 0, { min: 0, step: 1 }))),
    field("Seed", numberInput("seed", "", { min: 0, step: 1, placeholder: "random" })),
    field("Stop strings", h("textarea", { name: "stop", rows: 2, placeholder: "one per line" })),
    field("System prompt (chat)", ui.system),
    field("JSON schema", h("textarea", { name: "json_schema", rows: 3, class: "mono",
      placeholder: '{"type": "object", "properties": {...}} or json', "data-testid": "json-schema" }),
    "structured output: the answer follows it (every mode)"),
    field("Tools (chat)", h("textarea", { name: "tools", rows: 3, class: "mono",
      placeholder: '[{"name": "get_weather", "parameters": {...}}]', "data-testid": "tools" }),
    "OpenAI function definitions"),
    field("Tool choice", select("tool_choice", ["auto", "required", "none"])));
  return h("aside", { class: "card side" }, h("h2", { text: "Settings" }), ui.form);
}

function chatPanel() {
  ui.transcript = h("div", { class: "transcript", "data-testid": "transcript" },
    h("p", { class: "placeholder", text: "Say something to the model." }));
  ui.input = h("textarea", { rows: 3, placeholder: "Message (Enter sends, Shift+Enter: new line)",
    "data-testid": "chat-input" });
  ui.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); sendChat(); }
  });
  ui.send = button("Send", () => sendChat(), "primary", { "data-testid": "chat-send" });
  return h("div", { class: "panel", dataset: { mode: "chat" } }, ui.transcript,
    h("div", { class: "composer" }, ui.input, h("div", { class: "stack" }, ui.send,
      button("Clear", () => clearChat(), "ghost"))));
}

function generatePanel() {
  ui.prompt = h("textarea", { rows: 5, placeholder: "Prompt (sent as is, no chat template)" });
  ui.output = h("pre", { class: "output", "data-testid": "generate-output" });
  ui.generate = button("Generate", () => sendGenerate(), "primary");
  return h("div", { class: "panel", dataset: { mode: "generate" }, hidden: true },
    ui.prompt, h("div", { class: "actions" }, ui.generate), ui.output);
}

function batchPanel() {
  ui.prompts = h("textarea", { rows: 5, placeholder: "One prompt per line; all run together" });
  ui.batchResults = h("div");
  ui.batch = button("Run batch", () => sendBatch(), "primary");
  return h("div", { class: "panel", dataset: { mode: "batch" }, hidden: true },
    ui.prompts, h("div", { class: "actions" }, ui.batch), ui.batchResults);
}

function setMode(mode) {
  state.mode = mode;
  for (const b of ui.modeButtons) b.classList.toggle("active", b.dataset.mode === mode);
  for (const panel of ui.panels) panel.hidden = panel.dataset.mode !== mode;
}

function mount(el) {
  ui.modeButtons = MODES.map(([id, label]) => button(label, () => setMode(id), "seg",
    { dataset: { mode: id } }));
  ui.panels = [chatPanel(), generatePanel(), batchPanel()];
  ui.stop = button("Stop", () => state.controller && state.controller.abort(), "danger", { hidden: true });
  ui.stats = h("div", { class: "stats", "data-testid": "stats", text: "" });
  const head = h("div", { class: "card-head" }, h("div", { class: "segmented" }, ui.modeButtons), ui.stop);
  el.append(h("div", { class: "layout-side" }, controls(),
    card(head, ...ui.panels, ui.stats)));
  setMode("chat");
}

async function refreshModels() {
  try {
    setOptions(ui.model, modelOptions(await loadedModels()));
  } catch (err) {
    toast(`models: ${err.message}`);
  }
}

function bubble(role, text = "") {
  const body = h("div", { class: "bubble-text" }, document.createTextNode(text));
  const meta = h("div", { class: "bubble-meta" });
  const el = h("div", { class: `bubble ${role}`, dataset: { role } },
    h("div", { class: "bubble-role", text: role }), body, meta);
  $(ui.transcript, ".placeholder")?.remove();
  ui.transcript.append(el);
  el.scrollIntoView({ block: "end" });
  return { el, text: body.firstChild, meta };
}

// Runs one streamed request with the Stop button armed: "done", "stopped" or "failed".
async function running(work) {
  state.controller = new AbortController();
  ui.stop.hidden = false;
  try {
    await work(state.controller.signal);
    return "done";
  } catch (err) {
    if (err.name === "AbortError") return "stopped";
    toast(err.message);
    return "failed";
  } finally {
    ui.stop.hidden = true;
    state.controller = null;
  }
}

async function sendChat() {
  const content = ui.input.value.trim();
  if (!content || state.controller) return;
  ui.input.value = "";
  state.messages.push({ role: "user", content });
  bubble("user", content);
  const answer = bubble("assistant");
  answer.el.classList.add("streaming");
  const system = ui.system.value.trim();
  const messages = system ? [{ role: "system", content: system }, ...state.messages] : state.messages;
  const meter = new Meter();
  ui.send.disabled = true;
  const outcome = await running(async (signal) => {
    const out = await streamChat({ model: ui.model.value, messages, sampling: readSampling(ui.form),
      tools: readTools(ui.form), signal,
      onText: (t) => { meter.mark(); answer.text.appendData(t); } });
    const usage = out.usage || {};
    ui.stats.textContent = meter.summary({ promptTokens: usage.prompt_tokens,
      completionTokens: usage.completion_tokens, finish: out.finish, model: out.model });
  });
  answer.el.classList.remove("streaming");
  answer.meta.textContent = outcome === "done" ? ui.stats.textContent : outcome;
  // An answer that never started leaves no turn behind (the conversation must alternate).
  if (answer.text.data) state.messages.push({ role: "assistant", content: answer.text.data });
  else state.messages.pop();
  ui.send.disabled = false;
  ui.input.focus();
}

function clearChat() {
  state.messages = [];
  replace(ui.transcript, h("p", { class: "placeholder", text: "Say something to the model." }));
  ui.stats.textContent = "";
}

async function sendGenerate() {
  const prompt = ui.prompt.value;
  if (!prompt.trim() || state.controller) return;
  ui.output.textContent = "";
  const text = ui.output.appendChild(document.createTextNode(""));
  const meter = new Meter();
  ui.generate.disabled = true;
  await running(async (signal) => {
    const done = await streamGenerate({ model: ui.model.value, prompt, sampling: readSampling(ui.form),
      signal, onText: (t) => { meter.mark(); text.appendData(t); },
      onTokens: (n) => { ui.stats.textContent = `${n} tokens · ${meter.seconds.toFixed(1)} s`; } });
    ui.stats.textContent = meter.summary({ promptTokens: done.prompt_tokens,
      completionTokens: done.tokens_generated, finish: done.finish_reason, model: done.model_name });
  });
  ui.generate.disabled = false;
}

async function sendBatch() {
  const prompts = ui.prompts.value.split("\n").map((p) => p.trim()).filter(Boolean);
  if (!prompts.length) return;
  const meter = new Meter();
  const result = await busy(ui.batch, () => runBatch({ model: ui.model.value, prompts,
    sampling: readSampling(ui.form) }), "Running…");
  if (!result) return;
  replace(ui.batchResults, table([
    { label: "#", render: (r) => String(r.i + 1), class: "num" },
    { label: "Prompt", render: (r) => prompts[r.i], class: "wrap" },
    { label: "Output", render: (r) => r.text, class: "wrap pre" },
    { label: "Tokens", render: (r) => fmt.int(r.tokens_generated), class: "num" },
    { label: "Finish", render: (r) => r.finish_reason },
  ], result.results.map((r, i) => ({ ...r, i })), { testid: "batch-results" }));
  const prompt = result.results.reduce((n, r) => n + r.prompt_tokens, 0);
  ui.stats.textContent = `${result.total_count} prompts · ${meter.summary({ promptTokens: prompt,
    completionTokens: result.total_tokens_generated, model: result.model_name })}`;
}

export default {
  id: "playground",
  title: "Playground",
  mount,
  async show() {
    await refreshModels();
    const params = takeOpenParams("playground");
    if (params && params.model) {
      setOptions(ui.model, [...ui.model.options].map((o) => ({ value: o.value, label: o.text })), params.model);
      if (ui.model.value !== params.model) toast(`model '${params.model}' is not loaded`);
    }
  },
  hide() {},
};
