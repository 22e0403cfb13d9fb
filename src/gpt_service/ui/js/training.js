// Training: submit a LoRA fine-tuning job, follow it live (training-job.js), and the history
// with cancel / resume.

import { get, post } from "./api.js";
import { apiDefaults, datasetFiles, datasetOptions, loadedModels } from "./catalog.js";
import {
  badge, busy, button, card, field, fmt, h, numberInput, progressBar, replace, select, setOptions,
  table, toast,
} from "./dom.js";
import { JobView } from "./training-job.js";

const HISTORY_INTERVAL_MS = 3000;
const ACTIVE = new Set(["queued", "running"]);
let ui = {};
let timer = null;

function basicFields() {
  ui.baseModels = h("datalist", { id: "train-base-models" });
  ui.base = h("input", { name: "base_model", required: true, list: "train-base-models",
    placeholder: "a loaded model, a model directory or a hub id", "data-testid": "train-base" });
  ui.dataset = select("dataset_path", []);
  ui.dataset.required = true;
  ui.dataset.dataset.testid = "train-dataset";
  return [
    field("Base model", h("div", {}, ui.base, ui.baseModels)),
    field("Dataset", h("div", { class: "row" }, ui.dataset,
      button("↻", () => refreshChoices(), "ghost icon", { title: "reload the dataset list" })),
    "json / jsonl / csv in <data dir>/datasets, or the bundled demo data", "span-2"),
    // Numbers start empty (empty = the API's default) and are filled from the API's schema.
    field("Epochs", numberInput("num_epochs", "", { min: 0.01, step: "any" })),
    field("Batch size", numberInput("batch_size", "", { min: 1, step: 1 })),
    field("Learning rate", h("input", { name: "learning_rate", inputmode: "decimal" })),
    field("Max steps", numberInput("max_steps", "", { min: 1, step: 1, placeholder: "all epochs" }),
      "stop early after this many optimizer steps"),
  ];
}

function advancedFields() {
  return h("details", { class: "advanced" }, h("summary", { text: "LoRA and trainer options" }),
    h("div", { class: "form-grid" },
      field("LoRA r", numberInput("lora_r", "", { min: 1, step: 1 })),
      field("LoRA alpha", numberInput("lora_alpha", "", { min: 1, step: 1 })),
      field("LoRA dropout", numberInput("lora_dropout", "", { min: 0, max: 0.99, step: 0.01 })),
      field("Max sequence length", numberInput("max_seq_length", "", { min: 8, step: 1 })),
      field("Gradient accumulation", numberInput("gradient_accumulation_steps", "", { min: 1, step: 1 })),
      field("Warmup ratio", numberInput("warmup_ratio", "", { min: 0, max: 0.99, step: 0.01 })),
      field("Eval split", numberInput("eval_split", "", { min: 0, max: 0.5, step: 0.05 }),
        "held out for eval loss"),
      field("Seed", numberInput("seed", "", { min: 0, step: 1 })),
      field("Output directory", h("input", { name: "output_dir", placeholder: "models/lora/<base>-<time>" }),
        "inside the data directory")));
}

function submitForm() {
  const load = h("input", { type: "checkbox", name: "load_on_completion", checked: true });
  ui.submit = h("button", { type: "submit", class: "primary", text: "Start training",
    "data-testid": "train-submit" });
  const form = h("form", { class: "train-form" },
    h("div", { class: "form-grid" }, basicFields()), advancedFields(),
    h("div", { class: "actions" },
      h("label", { class: "check" }, load, " serve the adapter when training completes"), ui.submit));
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(form); });
  fillDefaults(form);
  return form;
}

// The API's defaults (TrainJobSpec in /openapi.json) into the fields left empty.
async function fillDefaults(form) {
  try {
    const defaults = await apiDefaults("TrainJobSpec");
    for (const el of form.elements) {
      const value = defaults[el.name];
      if (el.value === "" && typeof value === "number") el.value = String(value);
    }
  } catch (err) {
    // Without the schema, empty fields are simply not sent: the API applies its defaults.
    for (const el of form.elements) if (el.type === "number" || el.name === "learning_rate") el.placeholder ||= "API default";
  }
}

function readSpec(form) {
  const spec = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") spec[el.name] = el.checked;
    else if (el.value.trim() !== "") spec[el.name] = el.type === "number" || el.name === "learning_rate"
      ? Number(el.value) : el.value.trim();
  }
  return spec;
}

async function submit(form) {
  const spec = readSpec(form);
  if (Number.isNaN(spec.learning_rate)) { toast("learning rate must be a number, e.g. 2e-4"); return; }
  const answer = await busy(ui.submit, () => post("/train", spec), "Submitting…");
  if (!answer) return;
  toast(`training job ${fmt.shortId(answer.task_id)} queued`, "info");
  await refreshHistory();
  ui.job.open(answer.task_id);
}

function historyActions(job) {
  const id = encodeURIComponent(job.task_id);
  const run = (path, text) => async (e) => {
    if (await busy(e.target, () => post(path), text)) refreshHistory();
  };
  return h("div", { class: "row-actions" },
    ACTIVE.has(job.status) ? button("Cancel", run(`/train/${id}/cancel`, "…"), "danger small") : null,
    ["failed", "cancelled", "interrupted"].includes(job.status)
      ? button("Resume", run(`/train/${id}/resume`, "…"), "small") : null);
}

function renderHistory(tasks) {
  replace(ui.history, table([
    { label: "Job", render: (j) => h("code", { text: fmt.shortId(j.task_id), title: j.task_id }) },
    { label: "Status", render: (j) => badge(j.status) },
    { label: "Progress", render: (j) => h("div", { class: "row" }, progressBar(j.progress),
      h("span", { class: "percent", text: `${j.progress.toFixed(0)}%` })) },
    { label: "Base model", render: (j) => j.base_model },
    { label: "Dataset", render: (j) => j.dataset_path },
    { label: "Loss", render: (j) => fmt.num(j.loss, 4), class: "num" },
    { label: "Created", render: (j) => fmt.time(j.created_at) },
    { label: "Served as", render: (j) => (j.result && j.result.served_as) || "–" },
    { label: "", render: historyActions },
  ], tasks, { empty: "No training job yet.", onRow: (j) => ui.job.open(j.task_id),
    testid: "train-history" }));
}

async function refreshHistory() {
  try {
    const { tasks } = await get("/train/history", { limit: 20 });
    renderHistory(tasks);
    const open = ui.job.job && tasks.find((t) => t.task_id === ui.job.job.task_id);
    // The open job's adapter may get served after its stream ended.
    if (open && !ui.job.controller) ui.job.render({ ...ui.job.job, ...open, loss_history: ui.job.job.loss_history });
  } catch (err) {
    replace(ui.history, h("p", { class: "error", text: err.message }));
  }
}

async function refreshChoices() {
  try {
    const [models, files] = await Promise.all([loadedModels(), datasetFiles()]);
    replace(ui.baseModels, models.models.map((m) => h("option", { value: m.name })));
    if (!ui.base.value && models.current) ui.base.value = models.current;
    const preferred = files.find((f) => /train/i.test(f.name)) || files[0];
    setOptions(ui.dataset, datasetOptions(files), ui.dataset.value || (preferred && preferred.path));
  } catch (err) {
    toast(err.message);
  }
}

function mount(el) {
  ui.job = new JobView(() => refreshHistory());
  ui.history = h("div", { text: "Loading…" });
  const head = h("div", { class: "card-head" }, h("h2", { text: "History" }),
    button("Refresh", () => refreshHistory(), "ghost"));
  el.append(card("New fine-tuning job (LoRA)", submitForm()), ui.job.el, card(head, ui.history));
}

export default {
  id: "training",
  title: "Training",
  mount,
  show() {
    refreshChoices();
    refreshHistory();
    timer = setInterval(refreshHistory, HISTORY_INTERVAL_MS);
    if (ui.job.job && !ui.job.controller && ACTIVE.has(ui.job.job.status)) ui.job.open(ui.job.job.task_id);
  },
  hide() {
    clearInterval(timer);
    ui.job.stop();
  },
};
