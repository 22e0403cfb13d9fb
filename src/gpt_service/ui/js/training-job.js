// One training job, live: progress bar, step/epoch/loss/ETA, the loss chart, and its actions
// (cancel, resume, load the adapter, chat with it). Follows GET /train/status/{id}/stream.

import { events, get, post } from "./api.js";
import { lineChart } from "./chart.js";
import { loadedModels } from "./catalog.js";
import {
  badge, busy, button, fmt, h, openPage, progressBar, replace, setProgress, toast,
} from "./dom.js";

const STOPPED = new Set(["completed", "failed", "cancelled", "interrupted"]);
const RESUMABLE = new Set(["failed", "cancelled", "interrupted"]);

export class JobView {
  constructor(onChange) {
    this.onChange = onChange; // the history refreshes when a job changes state
    this.job = null;
    this.controller = null;
    this.title = h("h2", { text: "Job" });
    this.status = h("span");
    this.bar = progressBar(0, "train-progress");
    this.percent = h("span", { class: "percent", "data-testid": "train-percent" });
    this.facts = h("div", { class: "facts", "data-testid": "train-facts" });
    this.chart = h("div", { class: "chart-box" });
    this.message = h("div");
    this.evalKey = h("span", { class: "key eval", text: "eval loss", hidden: true });
    this.actions = h("div", { class: "row-actions" });
    this.el = h("section", { class: "card", hidden: true, "data-testid": "job-view" },
      h("div", { class: "card-head" }, h("div", { class: "row" }, this.title, this.status), this.actions),
      h("div", { class: "row progress-row" }, this.bar, this.percent),
      this.facts, this.chart,
      h("div", { class: "legend" }, h("span", { class: "key loss", text: "training loss" }),
        this.evalKey, h("span", { text: "x: optimizer step" })),
      this.message);
  }

  async open(taskId) {
    this.stop();
    this.el.hidden = false;
    try {
      this.render(await get(`/train/status/${encodeURIComponent(taskId)}`));
    } catch (err) {
      toast(err.message);
      return;
    }
    if (!STOPPED.has(this.job.status)) this.follow(taskId);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  // Progress events update the header at once; the loss history is fetched when the step moves.
  async follow(taskId) {
    const controller = new AbortController();
    this.controller = controller;
    let step = this.job.current_step;
    const path = `/train/status/${encodeURIComponent(taskId)}/stream`;
    try {
      for await (const ev of events("GET", path, { query: { interval: 0.3 }, signal: controller.signal })) {
        if (ev.event === "end") break;
        const data = ev.json();
        this.render({ ...this.job, ...data });
        if (data.current_step !== step) {
          step = data.current_step;
          const full = await get(`/train/status/${encodeURIComponent(taskId)}`);
          if (controller.signal.aborted) return; // another job was opened meanwhile
          this.render(full);
        }
      }
      const final = await get(`/train/status/${encodeURIComponent(taskId)}`);
      if (controller.signal.aborted) return;
      this.render(final);
      this.onChange();
    } catch (err) {
      if (err.name !== "AbortError") toast(`job ${fmt.shortId(taskId)}: ${err.message}`);
    } finally {
      if (this.controller === controller) this.controller = null;
    }
  }

  render(job) {
    const actionKey = (j) => `${j.status}|${(j.result && j.result.served_as) || ""}`;
    const changed = !this.job || actionKey(this.job) !== actionKey(job);
    this.job = job;
    this.title.textContent = `Job ${fmt.shortId(job.task_id)}`;
    this.title.title = job.task_id;
    replace(this.status, badge(job.status));
    this.el.dataset.status = job.status;
    setProgress(this.bar, job.progress);
    this.percent.textContent = `${(job.progress || 0).toFixed(0)}%`;
    replace(this.facts, ...facts(job).map(([k, v]) => h("div", {}, h("span", { class: "k", text: k }),
      h("span", { class: "v", text: v }))));
    if (job.loss_history) this.drawChart(job);
    this.renderMessage(job);
    if (changed) this.renderActions(job);
  }

  drawChart(job) {
    const loss = job.loss_history.map((p) => ({ x: p.step, y: p.loss }));
    const evalLoss = (job.eval_history || []).map((p) => ({ x: p.step, y: p.eval_loss }));
    // clientWidth less the box's padding; 0 while the page is hidden (then the default).
    const width = this.chart.clientWidth ? this.chart.clientWidth - 14 : undefined;
    replace(this.chart, lineChart([{ points: loss, cls: "loss" }, { points: evalLoss, cls: "eval" }],
      { width, testid: "loss-chart" }));
    this.evalKey.hidden = !evalLoss.length;
  }

  renderMessage(job) {
    const result = job.result || {};
    if (job.error) replace(this.message, h("pre", { class: "error", text: job.error }));
    else if (result.load_error) replace(this.message, h("p", { class: "error", text: `trained, not loaded: ${result.load_error}` }));
    else if (result.served_as) replace(this.message, h("p", { class: "ok", text: `serving as ${result.served_as}` }));
    else if (job.status === "completed") replace(this.message, h("p", { class: "muted", text: `adapter saved in ${job.output_dir}` }));
    else replace(this.message);
  }

  renderActions(job) {
    const id = encodeURIComponent(job.task_id);
    const served = job.result && job.result.served_as;
    replace(this.actions,
      STOPPED.has(job.status) ? null : button("Cancel", (e) => this.command(e.target, `/train/${id}/cancel`, "Cancelling…"), "danger small"),
      RESUMABLE.has(job.status) ? button("Resume", (e) => this.command(e.target, `/train/${id}/resume`, "Resuming…"), "small") : null,
      job.status === "completed" && !served ? button("Load this adapter", (e) => this.loadAdapter(e.target), "primary small", { "data-testid": "load-adapter" }) : null,
      served ? button("Chat with it", () => openPage("playground", { model: served }), "small",
        { "data-testid": "chat-with-adapter" }) : null);
  }

  async command(btn, path, busyText) {
    const job = await busy(btn, () => post(path), busyText);
    if (!job) return;
    this.onChange();
    await this.open(job.task_id);
  }

  // Onto the base model if it is loaded (as base:adapter), else as a new model with it.
  async loadAdapter(btn) {
    const job = this.job;
    const adapter = job.output_dir.replace(/\/+$/, "").split("/").pop().replace(/[^A-Za-z0-9._-]/g, "_");
    const served = await busy(btn, async () => {
      const { models } = await loadedModels();
      if (models.some((m) => m.name === job.base_model)) {
        await post(`/models/${encodeURIComponent(job.base_model)}/adapters`, { adapter_path: job.output_dir });
        return `${job.base_model}:${adapter}`;
      }
      const base = job.base_model.replace(/\/+$/, "").split("/").pop().replace(/[^A-Za-z0-9._-]/g, "_");
      const name = `${base}-${job.task_id.slice(0, 8)}`;
      await post("/models/load", { model_name: name, model_path: job.base_model, lora_adapter: job.output_dir });
      return name;
    }, "Loading…");
    if (!served) return;
    toast(`adapter loaded: use it as ${served}`, "info");
    this.render({ ...job, result: { ...(job.result || {}), served_as: served } });
    this.renderActions(this.job);
  }
}

function facts(job) {
  const result = job.result || {};
  const rows = [
    ["Step", `${fmt.int(job.current_step)} / ${job.total_steps ? fmt.int(job.total_steps) : "?"}`],
    ["Epoch", `${fmt.num(job.epoch, 2)} / ${job.total_epochs}`],
    ["Loss", fmt.num(job.loss, 4)],
    ["Learning rate", job.learning_rate === null || job.learning_rate === undefined ? "–" : job.learning_rate.toExponential(2)],
    ["ETA", STOPPED.has(job.status) ? "–" : fmt.seconds(job.eta_seconds)],
    ["Base model", job.base_model],
    ["Dataset", `${job.dataset_path}${job.num_examples ? ` (${job.num_examples} examples)` : ""}`],
    ["Output", job.output_dir],
    ["Created", fmt.time(job.created_at)],
  ];
  if (job.eval_loss !== null && job.eval_loss !== undefined) rows.splice(3, 0, ["Eval loss", fmt.num(job.eval_loss, 4)]);
  if (result.train_runtime) rows.push(["Runtime", fmt.seconds(result.train_runtime)]);
  if (result.train_loss !== undefined) rows.push(["Mean train loss", fmt.num(result.train_loss, 4)]);
  return rows;
}
