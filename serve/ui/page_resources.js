// A list and a detail page for every kind: status badges, label and namespace filters, YAML
// view, create, edit (PUT with If-Match) and delete. Watchable kinds update live.

import { can, get, listAll, request, watch } from "./api.js";
import { BY_PLURAL, template, writeRole } from "./kinds.js";
import { ago, badge, errorBox, h, kv, labels, link, table, time, toYAML } from "./ui.js";
import { agentCard } from "./page_agents.js";

export function itemHref(plural, obj) {
  const m = obj.metadata || {};
  const q = `?ns=${encodeURIComponent(m.namespace || "default")}`;
  return plural === "tasks" ? `#/tasks/${encodeURIComponent(m.name)}${q}` : `#/k/${plural}/${encodeURIComponent(m.name)}${q}`;
}

const SUMMARY = {
  Agent: (o) => [o.spec.model_ref || o.spec.model || "", ` · ${(o.spec.tools || []).length} tools`,
    (o.status || {}).actors ? ` · ${o.status.actors.length} actors` : ""].join(""),
  AgentSystem: (o) => `${(o.spec.agents || []).length} agents`,
  ModelEndpoint: (o) => `${o.spec.provider || ""} ${o.spec.default_model || ""}`,
  Tool: (o) => `${o.spec.type || "http"} ${o.spec.endpoint || ""}`,
  Task: (o) => `${o.spec.system || ""}${(o.status || {}).lastError ? ` · ${o.status.lastError}` : ""}`,
  Worker: (o) => `${o.spec.region || ""} · ${(o.status || {}).currentTasks || 0} turns`,
  ToolApproval: (o) => `${o.spec.tool || ""} for ${o.spec.task_ref || ""}`,
  TaskSchedule: (o) => `${o.spec.schedule || ""} → ${o.spec.task_ref || ""}`,
  TaskWebhook: (o) => `${(o.status || {}).endpointPath || ""}`,
  McpServer: (o) => `${o.spec.transport || ""} · ${(o.status || {}).toolCount || 0} tools`,
};

export function resourceTable(info, items) {
  const summary = SUMMARY[info.kind] || (() => "");
  return table([
    { title: "Name", cell: (o) => link(itemHref(info.plural, o), o.metadata.name) },
    { title: "Namespace", cell: (o) => o.metadata.namespace || "default" },
    { title: "Phase", cell: (o) => badge((o.status || {}).phase) },
    { title: "Summary", cell: (o) => summary({ spec: {}, ...o }) },
    { title: "Labels", cell: (o) => labels(o) },
    { title: "Created", cell: (o) => time(o.metadata.createdAt) },
  ], items, { empty: `No ${info.kind} objects in this view.`, rowAttrs: (o) => ({ "data-name": o.metadata.name, "data-ns": o.metadata.namespace || "default" }) });
}

export async function listPage({ main, params, query, signal, ns }) {
  const info = BY_PLURAL[params[0]];
  if (!info) throw new Error(`unknown kind ${params[0]}`);
  const selector = query.get("labels") || "";
  const filter = h("input", { name: "labels", value: selector, placeholder: "label selector, e.g. team=a,env=prod", size: 36 });
  const applyFilter = (e) => {
    e.preventDefault();
    location.hash = `#/k/${info.plural}${filter.value.trim() ? `?labels=${encodeURIComponent(filter.value.trim())}` : ""}`;
  };
  const live = h("span", { class: "live muted" }, info.watch ? "connecting…" : "");
  const body = h("div", {});
  main.replaceChildren(
    h("div", { class: "title" }, h("h1", {}, info.kind), live,
      can(writeRole(info)) ? h("a", { class: "button", href: `#/k/${info.plural}/new` }, `New ${info.kind}`) : ""),
    h("form", { class: "filters", onsubmit: applyFilter }, filter, h("button", { type: "submit" }, "Filter"),
      h("span", { class: "muted" }, ns ? ` namespace ${ns}` : " all namespaces")),
    body);
  const params_ = { namespace: ns, labelSelector: selector };
  const items = new Map();
  const key = (o) => `${o.metadata.namespace || "default"}/${o.metadata.name}`;
  for (const o of await listAll(info.plural, params_)) items.set(key(o), o);
  const draw = () => body.replaceChildren(resourceTable(info, [...items.values()].sort((a, b) => key(a).localeCompare(key(b)))));
  draw();
  if (!info.watch || selector) return;  // the watch stream has no label filter
  let pending = false;
  watch(`/v1/${info.plural}/watch`, { namespace: ns }, (name, data) => {
    if (name !== "resource") return;
    if (data.type === "deleted") items.delete(key(data.resource)); else items.set(key(data.resource), data.resource);
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); }
  }, signal, (s) => { live.textContent = s === "live" ? "● live" : "reconnecting…"; });
}

function tabs(pairs) {
  const bar = h("div", { class: "tabs", role: "tablist" });
  const panel = h("div", { class: "panel" });
  const show = (i) => {
    [...bar.children].forEach((b, j) => b.classList.toggle("active", i === j));
    panel.replaceChildren(pairs[i][1]());
  };
  pairs.forEach(([name], i) => bar.append(h("button", { role: "tab", type: "button", onclick: () => show(i) }, name)));
  show(0);
  return [bar, panel];
}

function editable(obj) {
  const { status, ...rest } = JSON.parse(JSON.stringify(obj));
  delete rest.metadata.resourceVersion;
  delete rest.metadata.generation;
  delete rest.metadata.createdAt;
  delete rest.metadata.uid;
  return rest;
}

export function yamlView(obj) { return h("pre", { class: "yaml" }, toYAML(obj)); }

export function overview(obj) {
  const m = obj.metadata || {};
  const status = obj.status || {};
  const simple = Object.entries(status).filter(([, v]) => typeof v !== "object" || v === null);
  return h("div", { class: "cols" },
    h("section", { class: "card" }, h("h2", {}, "Metadata"), kv([
      ["name", m.name], ["namespace", m.namespace || "default"], ["resourceVersion", m.resourceVersion],
      ["generation", m.generation], ["created", m.createdAt ? `${m.createdAt} (${ago(m.createdAt)})` : ""],
      ["labels", labels(obj)]])),
    h("section", { class: "card" }, h("h2", {}, "Status"),
      kv(simple.map(([k, v]) => [k, k === "phase" ? badge(v) : String(v)]))),
    h("section", { class: "card wide" }, h("h2", {}, "Spec"), yamlView(obj.spec || {})));
}

export function editor(info, obj, onSaved) {
  const area = h("textarea", { class: "code", rows: 24, spellcheck: "false", name: "manifest" }, toYAML(editable(obj)));
  const msg = h("div", {});
  const rv = obj.metadata.resourceVersion;
  const save = async () => {
    msg.replaceChildren();
    try {
      const saved = await request("PUT", `/v1/${info.plural}/${encodeURIComponent(obj.metadata.name)}`,
        { params: { namespace: obj.metadata.namespace }, body: area.value, contentType: "application/yaml", ifMatch: rv });
      onSaved(saved);
    } catch (err) { msg.replaceChildren(errorBox(err)); }
  };
  return h("div", {}, h("p", { class: "muted" }, `Saved with If-Match: ${rv}; a change made meanwhile is refused (409), nothing is overwritten.`),
    area, msg, h("button", { type: "button", onclick: save }, "Save"));
}

export async function detailPage({ main, params, query, signal }) {
  const info = BY_PLURAL[params[0]];
  if (!info) throw new Error(`unknown kind ${params[0]}`);
  if (info.plural === "tasks") { location.replace(`#/tasks/${params[1]}?${query}`); return; }
  const ns = query.get("ns") || "default";
  const path = `/v1/${info.plural}/${encodeURIComponent(params[1])}`;
  let obj = await get(path, { namespace: ns });
  const dashboard = info.kind === "Agent" ? ((await get("/v1/runtime")).ray || {}).dashboard_url || "" : "";
  const draw = () => {
    const canWrite = can(writeRole(info));
    const del = async () => {
      if (!confirm(`Delete ${info.kind} ${ns}/${obj.metadata.name}?`)) return;
      try {
        await request("DELETE", path, { params: { namespace: ns } });
        location.hash = `#/k/${info.plural}`;
      } catch (err) { main.prepend(errorBox(err)); }
    };
    const pairs = [["Overview", () => info.kind === "Agent" ? h("div", {}, agentCard(obj, dashboard), overview(obj)) : overview(obj)],
      ["YAML", () => yamlView(obj)]];
    if (canWrite && !info.noEdit) pairs.push(["Edit", () => editor(info, obj, (saved) => { obj = saved; draw(); })]);
    main.replaceChildren(
      h("div", { class: "title" }, h("h1", {}, `${info.kind} ${obj.metadata.name}`), badge((obj.status || {}).phase),
        canWrite ? h("button", { class: "danger", type: "button", onclick: del }, "Delete") : ""),
      info.noEdit && canWrite ? h("p", { class: "muted" }, info.noEdit) : "",
      ...tabs(pairs));
  };
  draw();
  if (!info.watch) return;
  watch(`/v1/${info.plural}/watch`, { namespace: ns, name: params[1] }, (name, data) => {
    if (name !== "resource" || data.type === "deleted") return;
    const editing = main.querySelector("textarea");
    obj = data.resource;
    if (!editing) draw();
  }, signal);
}

export async function createPage({ main, params, ns }) {
  const info = BY_PLURAL[params[0]];
  if (!info) throw new Error(`unknown kind ${params[0]}`);
  const area = h("textarea", { class: "code", rows: 20, spellcheck: "false", name: "manifest" }, template(info, ns));
  const msg = h("div", {});
  const create = async () => {
    msg.replaceChildren();
    try {
      const obj = await request("POST", `/v1/${info.plural}`, { body: area.value, contentType: "application/yaml" });
      location.hash = itemHref(info.plural, obj);
    } catch (err) { msg.replaceChildren(errorBox(err)); }
  };
  main.replaceChildren(h("h1", {}, `New ${info.kind}`),
    h("p", { class: "muted" }, "YAML or JSON, as `orloj apply` takes it; the server validates it and names the field that is wrong."),
    area, msg, h("button", { type: "button", onclick: create }, "Create"));
}
