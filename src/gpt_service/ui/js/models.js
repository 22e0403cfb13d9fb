// Models: what is loaded (device, dtype, size, adapters, current); load, unload, switch,
// and add a LoRA adapter to a loaded model.

import { post } from "./api.js";
import { loadedModels } from "./catalog.js";
import {
  busy, button, card, field, fmt, h, openPage, replace, select, setOptions, table, toast,
} from "./dom.js";

// Bytes per parameter, for the size of the weights in memory.
const BYTES = { float32: 4, float16: 2, bfloat16: 2, float64: 8, int8: 1, uint8: 1 };
let ui = {};

function nameCell(m) {
  return h("div", {}, h("strong", { text: m.name }),
    m.is_current ? h("span", { class: "badge badge-current", text: "current" }) : null,
    h("div", { class: "muted small", text: m.path, title: m.path }));
}

function stacked(first, second) {
  return h("div", {}, h("div", { text: first }), h("div", { class: "muted small", text: second }));
}

function adaptersCell(m) {
  if (!m.adapters || !m.adapters.length) return h("span", { class: "muted", text: "none" });
  return h("div", { class: "chips" },
    m.adapters.map((a) => h("span", { class: "chip", text: a, title: `requests use it as ${m.name}:${a}` })));
}

function actionsCell(m) {
  return h("div", { class: "row-actions" },
    button("Chat", () => openPage("playground", { model: m.name }), "ghost small"),
    m.is_current ? null : button("Make current", (e) => act(e.target, "/models/switch", m.name, "Switching…"), "small"),
    button("Unload", (e) => act(e.target, "/models/unload", m.name, "Unloading…"), "danger small",
      { "data-testid": `unload-${m.name}` }));
}

async function act(btn, path, name, busyText) {
  const done = await busy(btn, () => post(path, undefined, { model_name: name }), busyText);
  if (done) {
    toast(done.message, "info");
    await refresh();
  }
}

// Local engine, or a remote engine with its replicas' health (GET /models/{name}).
function backendCell(m) {
  if (m.backend !== "openai") return "local";
  const up = (m.replicas || []).filter((r) => r.healthy).length;
  const title = (m.replicas || []).map((r) => `${r.url}: ${r.healthy ? "up" : r.last_error}`).join("\n");
  return h("span", { title, text: `remote ${m.remote_model} (${up}/${(m.replicas || []).length} up)` });
}

function renderModels({ models }) {
  replace(ui.list, table([
    // Paired facts share a column (two lines), so the table fits 1280 px with its buttons.
    { label: "Model", render: nameCell, class: "wrap model-cell" },
    { label: "Architecture", render: (m) => m.architecture },
    { label: "Device / dtype", render: (m) => m.backend === "openai" ? backendCell(m) : stacked(m.device, m.dtype) },
    { label: "Parameters", render: (m) => stacked(fmt.params(m.num_parameters),
      fmt.bytes(m.num_parameters * (BYTES[m.dtype] || 4))), class: "num" },
    { label: "Context", render: (m) => fmt.int(m.context_length), class: "num" },
    { label: "Adapters", render: adaptersCell, class: "wrap" },
    { label: "Queue", render: (m) => h("span", { text: `${m.num_running} / ${m.num_waiting}`,
      title: "running / waiting requests" }), class: "num" },
    { label: "Loaded", render: (m) => fmt.time(m.loaded_at) },
    { label: "", render: actionsCell, class: "actions-cell" },
  ], models, { empty: "No model is loaded. Load one below.", testid: "models-table" }));
  setOptions(ui.adapterModel, models.map((m) => m.name));
}

async function refresh() {
  try {
    renderModels(await loadedModels());
  } catch (err) {
    replace(ui.list, h("p", { class: "error", text: err.message }));
  }
}

function loadForm() {
  const form = h("form", { class: "form-grid" },
    field("Name", h("input", { name: "model_name", required: true, placeholder: "my-model",
      pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]*" }), "how requests refer to it"),
    field("Model path", h("input", { name: "model_path", placeholder: "models/my-model or org/name" }),
      "directory in the data directory (or a model dir), or a hub id; default: the name"),
    field("LoRA adapter (optional)", h("input", { name: "lora_adapter", placeholder: "models/lora/…" }),
      "applied to every request of this model"));
  const submit = h("button", { type: "submit", class: "primary", text: "Load model" });
  form.append(h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    const body = { model_name: v.model_name.trim(), model_path: v.model_path.trim() || undefined,
      lora_adapter: v.lora_adapter.trim() || undefined };
    const done = await busy(submit, () => post("/models/load", body), "Loading…");
    if (done) { toast(done.message, "info"); form.reset(); await refresh(); }
  });
  return form;
}

function adapterForm() {
  ui.adapterModel = select("model", []);
  const form = h("form", { class: "form-grid" },
    field("Model", ui.adapterModel),
    field("Adapter directory", h("input", { name: "adapter_path", required: true,
      placeholder: "models/lora/…" }), "a trained LoRA adapter (e.g. a training job's output)"),
    field("Adapter name (optional)", h("input", { name: "adapter_name", placeholder: "directory name" }),
      "requests pick it as model:adapter"));
  const submit = h("button", { type: "submit", class: "primary", text: "Add adapter" });
  form.append(h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    const body = { adapter_path: v.adapter_path.trim(), adapter_name: v.adapter_name.trim() || undefined };
    const path = `/models/${encodeURIComponent(ui.adapterModel.value)}/adapters`;
    const done = await busy(submit, () => post(path, body), "Adding…");
    if (done) { toast(done.message, "info"); form.reset(); await refresh(); }
  });
  return form;
}

function mount(el) {
  ui.list = h("div", { text: "Loading…" });
  const head = h("div", { class: "card-head" }, h("h2", { text: "Loaded models" }),
    button("Refresh", () => refresh(), "ghost"));
  el.append(card(head, ui.list),
    h("div", { class: "grid-2 wide" },
      card("Load a model", loadForm()),
      card("Add a LoRA adapter", adapterForm())));
}

export default { id: "models", title: "Models", mount, show: refresh, hide() {} };
