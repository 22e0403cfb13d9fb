// Lookups several pages share: loaded models (with their adapters) and dataset files.

import { get } from "./api.js";
import { fmt } from "./dom.js";

// [{name, detail}] for every loaded model; detail is GET /models/{name} (adapters, dtype...).
export async function loadedModels() {
  const list = await get("/models");
  const details = await Promise.all(list.models.map((m) => get(`/models/${encodeURIComponent(m.name)}`)
    .catch(() => ({ ...m, adapters: [] }))));
  return { current: list.current_model, models: details };
}

// Choices for a model <select>: each model, then each "model:adapter".
export function modelOptions({ current, models }, { withCurrent = true } = {}) {
  const options = withCurrent ? [{ value: "", label: `current model${current ? ` (${current})` : ""}` }] : [];
  for (const m of models) {
    options.push({ value: m.name, label: m.lora_adapter ? `${m.name} (with its LoRA)` : m.name });
    for (const adapter of m.adapters || []) {
      options.push({ value: `${m.name}:${adapter}`, label: `${m.name}:${adapter}  (LoRA)` });
    }
  }
  return options;
}

// Defaults of a request body as the API documents them (its OpenAPI schema): the one source
// of truth, so a form never drifts from what the API would use. {field: default}.
let schemas = null;
export async function apiDefaults(schemaName) {
  schemas = schemas || get("/openapi.json").then((s) => s.components.schemas);
  const properties = ((await schemas)[schemaName] || {}).properties || {};
  return Object.fromEntries(Object.entries(properties)
    .filter(([, spec]) => spec.default !== undefined && spec.default !== null)
    .map(([name, spec]) => [name, spec.default]));
}

export async function datasetFiles() {
  return (await get("/datasets")).datasets;
}

export function datasetOptions(files) {
  return files.map((f) => ({
    value: f.path,
    label: `${f.path}  ·  ${f.source === "demo" ? "demo, " : ""}${f.num_rows ?? "?"} rows, ${fmt.bytes(f.size_bytes)}`,
  }));
}
