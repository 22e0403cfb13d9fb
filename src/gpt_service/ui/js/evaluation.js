// Evaluation: run a model (and optionally a second one, e.g. base vs adapter) on a dataset or
// inline samples; scores table, per-sample predictions side by side, and the history.

import { get, post } from "./api.js";
import { datasetFiles, datasetOptions, loadedModels, modelOptions } from "./catalog.js";
import {
  badge, busy, button, card, field, fmt, h, numberInput, progressBar, replace, select, setOptions,
  setProgress, table, toast,
} from "./dom.js";
import { generationLine, runHeader, samplesTable, scoresTable } from "./evaluation-results.js";

const METRICS = ["exact_match", "bleu", "rouge", "chrf", "perplexity"];
const FINAL = new Set(["completed", "failed", "interrupted"]);
const POLL_MS = 700;
const EXAMPLE = [
  { input: "什么是AI？", expected: "AI是人工智能的缩写。" },
  { input: "What is 2 + 2?", expected: "4" },
].map((s) => JSON.stringify(s)).join("\n");
let ui = {};
let polling = 0; // bumped to drop a poll loop when a newer view replaces it

function sourceFields() {
  ui.dataset = select("dataset_path", []);
  ui.dataset.dataset.testid = "eval-dataset";
  ui.inline = h("textarea", { rows: 4, text: EXAMPLE, class: "mono" });
  ui.useInline = h("input", { type: "checkbox" });
  ui.useInline.addEventListener("change", () => {
    ui.dataset.disabled = ui.useInline.checked;
    ui.inline.hidden = !ui.useInline.checked;
  });
  ui.inline.hidden = true;
  return [
    field("Dataset", ui.dataset, "test rows: input/expected, prompt/completion, instruction/output or messages"),
    h("label", { class: "check" }, ui.useInline, " use inline samples instead (JSON lines of input / expected)"),
    ui.inline,
  ];
}

function form() {
  ui.modelA = select("model_a", []);
  ui.modelA.dataset.testid = "eval-model";
  ui.modelB = select("model_b", []);
  ui.modelA.addEventListener("change", suggestBase);
  ui.metrics = METRICS.map((m) => h("input", { type: "checkbox", value: m, checked: true }));
  ui.run = h("button", { type: "submit", class: "primary", text: "Run evaluation", "data-testid": "eval-run" });
  const el = h("form", {},
    h("div", { class: "form-grid" },
      field("Model (A)", ui.modelA, "model or model:adapter"),
      field("Compare with (B)", ui.modelB, "optional: e.g. the base model of an adapter"),
      field("Max samples", numberInput("max_samples", 20, { min: 1, step: 1 })),
      field("Max new tokens", numberInput("max_tokens", 64, { min: 1, step: 1 }))),
    h("div", { class: "source" }, sourceFields()),
    h("div", { class: "actions" },
      h("div", { class: "checks" }, h("span", { class: "caption", text: "Metrics" }),
        ui.metrics.map((box) => h("label", { class: "check" }, box, ` ${box.value}`))),
      ui.run));
  el.addEventListener("submit", (e) => { e.preventDefault(); run(el); });
  return el;
}

// "model:adapter" in A -> its base model in B, the usual comparison.
function suggestBase() {
  const value = ui.modelA.value;
  if (value.includes(":") && !ui.modelB.value) ui.modelB.value = value.split(":")[0];
}

function request(elements, model) {
  const body = {
    model_name: model || undefined,
    metrics: ui.metrics.filter((b) => b.checked).map((b) => b.value),
    max_tokens: Number(elements.max_tokens.value) || undefined,
  };
  if (ui.useInline.checked) {
    body.test_data = ui.inline.value.split("\n").filter((l) => l.trim()).map((l, i) => {
      try { return JSON.parse(l); } catch { throw new Error(`inline sample ${i + 1} is not valid JSON`); }
    });
  } else {
    body.dataset_path = ui.dataset.value;
    body.max_samples = Number(elements.max_samples.value) || undefined;
  }
  return body;
}

async function run(el) {
  const models = [ui.modelA.value, ...(ui.modelB.value ? [ui.modelB.value] : [])];
  const started = await busy(ui.run, async () => {
    const bodies = models.map((m) => request(el.elements, m));
    return Promise.all(bodies.map((b) => post("/evaluate", b)));
  }, "Starting…");
  if (!started) return;
  toast(`evaluation started: ${started.map((s) => fmt.shortId(s.eval_id)).join(", ")}`, "info");
  showRuns(started.map((s) => s.eval_id));
}

// Polls the runs until all are final, showing progress; then the scores and samples.
async function showRuns(ids) {
  const token = ++polling;
  const bars = ids.map(() => progressBar(0));
  ui.results.hidden = false;
  replace(ui.resultsBody, h("div", { class: "stack", "data-testid": "eval-progress" },
    ids.map((id, i) => h("div", { class: "row progress-row" }, h("span", { class: "ab", text: "AB"[i] }),
      bars[i], h("code", { text: fmt.shortId(id) })))));
  for (;;) {
    let runs;
    try {
      runs = await Promise.all(ids.map((id) => get(`/evaluate/results/${encodeURIComponent(id)}`)));
    } catch (err) {
      toast(err.message);
      return;
    }
    if (token !== polling) return;
    runs.forEach((r, i) => setProgress(bars[i], r.progress));
    if (runs.every((r) => FINAL.has(r.status))) { renderRuns(runs); refreshHistory(); return; }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function renderRuns(runs) {
  ui.shown = runs[0].eval_id;
  const failed = runs.filter((r) => r.status !== "completed");
  replace(ui.resultsBody, runHeader(runs),
    failed.map((r) => h("p", { class: "error", text: `${r.model_name}: ${r.status}${r.error ? ` – ${r.error}` : ""}` })),
    h("h3", { text: "Scores" }), scoresTable(runs), generationLine(runs),
    h("h3", { text: "Samples" }), samplesTable(runs));
}

function renderHistory(evaluations) {
  const scoreText = (e) => Object.entries(e.scores || {})
    .map(([k, v]) => `${k} ${v === null ? "–" : fmt.num(v, 2)}`).join(" · ");
  replace(ui.history, table([
    { label: "Eval", render: (e) => h("code", { text: fmt.shortId(e.eval_id), title: e.eval_id }) },
    { label: "Status", render: (e) => badge(e.status) },
    { label: "Model", render: (e) => e.model_name },
    { label: "Data", render: (e) => e.dataset_path || "inline" },
    { label: "Samples", render: (e) => fmt.int(e.num_samples), class: "num" },
    { label: "Scores", render: scoreText, class: "wrap" },
    { label: "Created", render: (e) => fmt.time(e.created_at) },
    { label: "", render: (e) => h("div", { class: "row-actions" },
      button("View", () => showRuns([e.eval_id]), "small"),
      ui.shown && ui.shown !== e.eval_id
        ? button("Compare with shown", () => showRuns([ui.shown, e.eval_id]), "ghost small") : null) },
  ], evaluations, { empty: "No evaluation yet.", testid: "eval-history" }));
}

async function refreshHistory() {
  try {
    renderHistory((await get("/evaluate/history", { limit: 20 })).evaluations);
  } catch (err) {
    replace(ui.history, h("p", { class: "error", text: err.message }));
  }
}

async function refreshChoices() {
  try {
    const [models, files] = await Promise.all([loadedModels(), datasetFiles()]);
    setOptions(ui.modelA, modelOptions(models));
    setOptions(ui.modelB, [{ value: "", label: "— nothing —" }, ...modelOptions(models, { withCurrent: false })]);
    const preferred = files.find((f) => /test|eval/i.test(f.name)) || files[0];
    setOptions(ui.dataset, datasetOptions(files), ui.dataset.value || (preferred && preferred.path));
  } catch (err) {
    toast(err.message);
  }
}

function mount(el) {
  ui.resultsBody = h("div");
  ui.results = card("Results", ui.resultsBody);
  ui.results.hidden = true;
  ui.history = h("div", { text: "Loading…" });
  const head = h("div", { class: "card-head" }, h("h2", { text: "History" }),
    button("Refresh", () => refreshHistory(), "ghost"));
  el.append(card("Run an evaluation", form()), ui.results, card(head, ui.history));
}

export default {
  id: "evaluation",
  title: "Evaluation",
  mount,
  show() { refreshChoices(); refreshHistory(); },
  hide() {},
};
