// Rendering of evaluation results: the scores table (one column per run, with the difference
// when two runs are compared) and the per-sample predictions side by side.

import { fmt, h, table } from "./dom.js";

// exact_match and rouge are 0..1, bleu and chrf 0..100; only perplexity is better when lower.
const METRICS = {
  exact_match: { label: "Exact match", show: (v) => `${(v * 100).toFixed(1)}%`, scale: 100 },
  bleu: { label: "BLEU", show: (v) => v.toFixed(2), scale: 1 },
  rouge: { label: "ROUGE-L", show: (v) => v.toFixed(3), scale: 1 },
  chrf: { label: "chrF", show: (v) => v.toFixed(2), scale: 1 },
  perplexity: { label: "Perplexity", show: (v) => v.toFixed(3), scale: 1, lowerIsBetter: true },
};
const SAMPLE_SCORES = ["exact_match", "rougeL", "bleu", "chrf", "perplexity"];

function metricInfo(name) {
  return METRICS[name] || { label: name, show: (v) => fmt.num(v, 3), scale: 1 };
}

function show(name, value) {
  return value === null || value === undefined ? "–" : metricInfo(name).show(value);
}

function delta(name, a, b) {
  if (a === null || a === undefined || b === null || b === undefined) return h("span", { text: "–" });
  const info = metricInfo(name);
  const diff = (a - b) * info.scale;
  const better = info.lowerIsBetter ? diff < 0 : diff > 0;
  const cls = diff === 0 ? "muted" : better ? "ok" : "error";
  return h("span", { class: cls, text: `${diff > 0 ? "+" : ""}${diff.toFixed(info.scale === 100 ? 1 : 3)}` });
}

function runTitle(run) {
  return h("div", {}, h("strong", { text: run.model_name }),
    h("div", { class: "muted small", text: `eval ${fmt.shortId(run.eval_id)}` }));
}

export function scoresTable(runs) {
  const names = [...new Set(runs.flatMap((r) => Object.keys(r.scores || {})))];
  const columns = [{ label: "Metric", render: (n) => metricInfo(n).label }];
  runs.forEach((run, i) => columns.push({
    label: `${"AB"[i]}: ${run.model_name}`, render: (n) => show(n, (run.scores || {})[n]), class: "num",
  }));
  if (runs.length === 2) {
    columns.push({ label: "A − B", render: (n) => delta(n, runs[0].scores[n], runs[1].scores[n]), class: "num" });
  }
  return table(columns, names, { empty: "No scores.", testid: "eval-scores" });
}

export function generationLine(runs) {
  return h("div", { class: "stats" }, runs.map((run, i) => {
    const g = run.generation || {};
    return h("div", {}, `${"AB"[i]} (${run.model_name}): ${fmt.int(run.num_samples)} samples · `
      + `${fmt.int(g.num_completion_tokens)} tokens in ${fmt.num(g.seconds, 2)} s · `
      + `${fmt.num(g.tokens_per_second, 1)} tok/s`
      + `${g.num_failed ? ` · ${g.num_failed} failed` : ""}`);
  }));
}

function prediction(row) {
  if (!row) return h("span", { class: "muted", text: "–" });
  const scores = SAMPLE_SCORES.filter((k) => row.scores && row.scores[k] !== undefined && row.scores[k] !== null)
    .map((k) => h("span", { class: "chip", text: `${k} ${k === "exact_match" ? (row.scores[k] ? "✓" : "✗") : fmt.num(row.scores[k], 2)}` }));
  const matched = row.scores && row.scores.exact_match === 1;
  return h("div", { class: matched ? "pred matched" : "pred" },
    h("div", { class: "pre", text: row.prediction || (row.error ? "" : "(empty)") }),
    row.error ? h("div", { class: "error", text: row.error }) : null,
    h("div", { class: "chips" }, scores));
}

export function samplesTable(runs) {
  const base = runs[0].samples || [];
  const columns = [
    { label: "#", render: (s) => String(s.index + 1), class: "num" },
    { label: "Input", render: (s) => h("div", { class: "pre", text: s.input }), class: "wrap" },
    { label: "Expected", render: (s) => h("div", { class: "pre", text: s.expected }), class: "wrap" },
  ];
  runs.forEach((run, i) => {
    const byIndex = new Map((run.samples || []).map((s) => [s.index, s]));
    columns.push({ label: `${"AB"[i]}: ${run.model_name}`, render: (s) => prediction(byIndex.get(s.index)), class: "wrap" });
  });
  return table(columns, base, { empty: "No per-sample rows.", testid: "eval-samples" });
}

export function runHeader(runs) {
  return h("div", { class: "run-heads" }, runs.map((run, i) =>
    h("div", { class: "run-head" }, h("span", { class: "ab", text: "AB"[i] }), runTitle(run))));
}
