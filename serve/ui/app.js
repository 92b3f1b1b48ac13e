// The console's shell: navigation, namespace picker, token prompt and the hash router.
// Each page gets an AbortSignal that closes its watch streams when the page is left.

import { auth, get, loadAuth, setToken } from "./api.js";
import { errorBox, h } from "./ui.js";
import { dashboard } from "./page_dashboard.js";
import { createPage, detailPage, listPage } from "./page_resources.js";
import { taskPage } from "./page_task.js";
import { approvalsPage, auditPage } from "./page_governance.js";
import { agentsPage } from "./page_agents.js";
import { KINDS } from "./kinds.js";

const NS_KEY = "orloj.namespace";
export const state = { namespace: sessionStorage.getItem(NS_KEY) || "" };

const ROUTES = [
  [/^\/$/, dashboard],
  [/^\/login$/, loginPage],
  [/^\/approvals$/, approvalsPage],
  [/^\/audit$/, auditPage],
  [/^\/agents-runtime$/, agentsPage],
  [/^\/tasks\/([^/]+)$/, taskPage],
  [/^\/k\/([^/]+)$/, listPage],
  [/^\/k\/([^/]+)\/new$/, createPage],
  [/^\/k\/([^/]+)\/([^/]+)$/, detailPage],
];

let current = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { path, query: new URLSearchParams(query) };
}

async function route() {
  if (current) current.abort();
  current = new AbortController();
  const main = document.getElementById("main");
  const { path, query } = parseHash();
  if (auth.mode === "token" && !auth.ready && path !== "/login") { location.hash = "#/login"; return; }
  for (const [pattern, page] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    const signal = current.signal;
    // each page renders into its own view: a page left before it finished loading draws into
    // a detached element, never over the page that replaced it
    const view = h("div", { class: "view" }, h("p", { class: "empty" }, "Loading…"));
    main.dataset.ready = "";
    main.replaceChildren(view);
    markNav(path);
    try {
      await page({ main: view, params: m.slice(1).map(decodeURIComponent), query, signal, ns: state.namespace });
    } catch (err) {
      if (!signal.aborted) view.replaceChildren(errorBox(err));
    }
    if (!signal.aborted) main.dataset.ready = location.hash || "#/";  // rendered: what tests and scripts wait for
    return;
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, `No page at ${path}.`));
}

function markNav(path) {
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").slice(1);
    a.classList.toggle("active", target === path || (target !== "/" && path.startsWith(target)));
  }
}

function nav() {
  const main = [["#/", "Dashboard"], ["#/k/tasks", "Tasks"], ["#/agents-runtime", "Agents & actors"],
    ["#/approvals", "Approvals"], ["#/audit", "Audit"]];
  const kinds = KINDS.filter((k) => k.plural !== "tasks");
  document.getElementById("nav").replaceChildren(
    ...main.map(([href, text]) => h("a", { href }, text)),
    h("details", { class: "kinds" }, h("summary", {}, "Resources"),
      h("div", { class: "menu" }, kinds.map((k) => h("a", { href: `#/k/${k.plural}` }, k.kind)))));
}

async function namespaces() {
  const select = document.getElementById("ns");
  let names = ["default"];
  try { names = (await get("/v1/namespaces")).namespaces || names; } catch { /* shown by the page */ }
  if (state.namespace && !names.includes(state.namespace)) names.push(state.namespace);
  select.replaceChildren(h("option", { value: "" }, "all"), ...names.map((n) => h("option", { value: n }, n)));
  select.value = state.namespace;
  select.onchange = () => {
    state.namespace = select.value;
    sessionStorage.setItem(NS_KEY, state.namespace);
    route();
  };
}

function who() {
  const el = document.getElementById("who");
  if (auth.mode !== "token") { el.replaceChildren(h("span", { class: "muted" }, "auth off")); return; }
  el.replaceChildren(auth.ready ? h("span", {}, `${auth.user || "token"} · ${auth.role} `) : "",
    auth.ready ? h("button", { class: "link", onclick: () => { setToken(""); location.reload(); } }, "sign out") : "");
}

async function loginPage({ main }) {
  const input = h("input", { type: "password", name: "token", placeholder: "API token", autocomplete: "off", required: true });
  const msg = h("p", { class: "muted" }, "This API runs in token mode: paste a token from ORLOJ_API_TOKENS. " +
    "It is kept in this tab's session storage only.");
  const form = h("form", { class: "card login", onsubmit: async (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    await loadAuth();
    if (!auth.ready) { setToken(""); msg.replaceChildren(errorBox("That token is not valid.")); return; }
    who();
    await namespaces();
    location.hash = "#/";
  } }, h("h1", {}, "Sign in"), msg, input, h("button", { type: "submit" }, "Sign in"));
  main.replaceChildren(form);
  input.focus();
}

async function start() {
  nav();
  try { await loadAuth(); } catch (err) { document.getElementById("main").replaceChildren(errorBox(err)); return; }
  who();
  if (auth.ready) await namespaces();
  window.addEventListener("hashchange", route);
  await route();
}

start();
