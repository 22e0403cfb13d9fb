// Small DOM helpers. Text always goes in through textContent, never innerHTML, so model
// output and file names can never inject markup.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "on") for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (root, selector) => root.querySelector(selector);

// A labelled form control: h("label") around the caption, the input and an optional hint.
export function field(caption, input, hint, cls = "") {
  return h("label", { class: `field ${cls}` }, h("span", { class: "caption", text: caption }), input,
    hint ? h("small", { class: "hint", text: hint }) : null);
}

export function numberInput(name, value, { min, max, step = "any", placeholder } = {}) {
  return h("input", { type: "number", name, value: value ?? "", min, max, step, placeholder });
}

export function select(name, options, value) {
  const el = h("select", { name });
  setOptions(el, options, value);
  return el;
}

// options: [{value, label}] or strings; keeps the current choice when it still exists.
export function setOptions(el, options, value = el.value) {
  el.replaceChildren(...options.map((o) => {
    const opt = typeof o === "string" ? { value: o, label: o } : o;
    return h("option", { value: opt.value, text: opt.label ?? opt.value });
  }));
  if ([...el.options].some((o) => o.value === value)) el.value = value;
}

export function button(text, onClick, cls = "", attrs = {}) {
  return h("button", { type: "button", class: cls, text, on: { click: onClick }, ...attrs });
}

// Disables the button while `work` runs and reports its failure as a toast.
export async function busy(btn, work, busyText = "Working…") {
  const label = btn.textContent;
  btn.disabled = true;
  btn.textContent = busyText;
  try {
    return await work();
  } catch (err) {
    if (err.name !== "AbortError") toast(err.message);
    return undefined;
  } finally {
    btn.disabled = false;
    btn.textContent = label;
  }
}

export function card(title, ...children) {
  const heading = typeof title === "string" ? h("h2", { text: title }) : title;
  return h("section", { class: "card" }, heading, ...children);
}

export function badge(status) {
  return h("span", { class: `badge badge-${status}`, text: status });
}

export function progressBar(percent, testid) {
  const fill = h("div", { class: "bar-fill" });
  const bar = h("div", {
    class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
    "data-testid": testid,
  }, fill);
  setProgress(bar, percent);
  return bar;
}

export function setProgress(bar, percent) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  bar.setAttribute("aria-valuenow", String(value));
  bar.firstChild.style.width = `${value}%`;
}

// columns: [{label, render(row) -> Node|string, class?}]
export function table(columns, rows, { empty = "Nothing yet.", onRow, testid } = {}) {
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.class, text: c.label })));
  const body = rows.length
    ? rows.map((row) => {
      const tr = h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.render(row))));
      if (onRow) {
        tr.classList.add("clickable");
        tr.addEventListener("click", (e) => { if (!e.target.closest("button")) onRow(row); });
      }
      return tr;
    })
    : [h("tr", {}, h("td", { class: "empty", colspan: String(columns.length), text: empty }))];
  return h("div", { class: "table-wrap" },
    h("table", { "data-testid": testid }, h("thead", {}, head), h("tbody", {}, body)));
}

export function toast(message, kind = "error") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status",
    text: message });
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

export const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US")),
  num: (n, digits = 3) => (n === null || n === undefined ? "–" : Number(n).toFixed(digits)),
  params(n) {
    if (!n) return "–";
    for (const [unit, size] of [["B", 1e9], ["M", 1e6], ["K", 1e3]]) {
      if (n >= size) return `${(n / size).toFixed(n >= size * 100 ? 0 : 1)}${unit}`;
    }
    return String(n);
  },
  bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
  },
  seconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  },
  time(iso) {
    if (!iso) return "–";
    const d = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  },
  shortId: (id) => (id ? id.slice(0, 8) : "–"),
};

// Cross-page navigation with parameters (e.g. "chat with this adapter"); see app.js.
export function openPage(id, params = {}) {
  window.dispatchEvent(new CustomEvent("open-page", { detail: { id, ...params } }));
}

export function takeOpenParams(id) {
  const key = `gpt-service.open.${id}`;
  const raw = sessionStorage.getItem(key);
  sessionStorage.removeItem(key);
  return raw ? JSON.parse(raw) : null;
}
