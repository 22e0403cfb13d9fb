// The console shell: hash routing between pages, the health badge and the API-key banner.
//
// A page module exports {id, title, mount(el), show(), hide()}: mount builds its DOM once,
// show runs each time it is opened (refresh data, start timers), hide stops the timers.

import { get, getKey, setKey } from "./api.js";
import { h, toast } from "./dom.js";
import evaluation from "./evaluation.js";
import models from "./models.js";
import ollama from "./ollama.js";
import playground from "./playground.js";
import training from "./training.js";

const PAGES = [playground, models, training, evaluation, ollama];
const HEALTH_INTERVAL_MS = 15000;
let active = null;

function setupPages() {
  const nav = document.getElementById("nav");
  const main = document.getElementById("pages");
  for (const page of PAGES) {
    nav.append(h("a", { href: `#/${page.id}`, id: `tab-${page.id}`, text: page.title }));
    const el = h("div", { class: "page", id: `page-${page.id}`, hidden: true });
    main.append(el);
    page.mount(el);
  }
}

function route() {
  const id = location.hash.replace(/^#\/?/, "").split("?")[0] || PAGES[0].id;
  const page = PAGES.find((p) => p.id === id) || PAGES[0];
  if (active) active.hide(); // also when re-shown (key saved): show() restarts its timers
  for (const p of PAGES) {
    document.getElementById(`page-${p.id}`).hidden = p !== page;
    document.getElementById(`tab-${p.id}`).classList.toggle("active", p === page);
  }
  document.title = `${page.title} · GPT Service`;
  active = page;
  page.show();
}

// Other pages ask to open one (e.g. "chat with this adapter") through this event.
window.addEventListener("open-page", (e) => {
  const { id, ...params } = e.detail;
  sessionStorage.setItem(`gpt-service.open.${id}`, JSON.stringify(params));
  location.hash = `#/${id}`;
});

async function refreshHealth() {
  const badge = document.getElementById("health");
  const text = badge.querySelector(".health-text");
  try {
    const health = await get("/health");
    const parts = ["model_manager", "trainer", "evaluator", "ollama_proxy"]
      .map((k) => `${k}: ${health[k] ? "up" : "down"}`);
    badge.dataset.state = health.model_manager ? "ok" : "warn";
    text.textContent = health.model_manager ? "online" : "no model";
    badge.title = parts.join("\n");
  } catch (err) {
    badge.dataset.state = "down";
    text.textContent = "offline";
    badge.title = err.message;
  }
}

function setupKeyBanner() {
  const banner = document.getElementById("key-banner");
  const input = document.getElementById("key-input");
  const message = document.getElementById("key-message");
  const open = (text) => {
    message.textContent = text || "This server needs an API key.";
    banner.hidden = false;
    input.focus();
  };
  const keyButton = document.getElementById("key-button");
  const showKeyState = () => keyButton.classList.toggle("has-key", Boolean(getKey()));
  window.addEventListener("api-key-required", (e) => {
    if (banner.hidden) open(getKey() ? `The saved key was refused: ${e.detail}` : undefined);
  });
  keyButton.addEventListener("click", () => open("API key for this server (if it needs one)."));
  document.getElementById("key-close").addEventListener("click", () => { banner.hidden = true; });
  document.getElementById("key-forget").addEventListener("click", () => {
    setKey("");
    input.value = "";
    showKeyState();
    toast("API key forgotten", "info");
  });
  document.getElementById("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    input.value = "";
    banner.hidden = true;
    showKeyState();
    toast("API key saved in this browser", "info");
    route();
  });
  showKeyState();
}

setupKeyBanner();
setupPages();
window.addEventListener("hashchange", route);
route();
refreshHealth();
setInterval(refreshHealth, HEALTH_INTERVAL_MS);
