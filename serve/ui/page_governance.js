// Approvals (approve / deny, with the call each is bound to) and the audit trail with filters.

import { auth, can, get, listAll, request, watch } from "./api.js";
import { ago, badge, errorBox, h, link, table, time } from "./ui.js";

const DIGEST = "orloj.dev/args-digest";
const MESSAGE = "orloj.dev/message-id";

function taskLink(ref) {
  const [ns, name] = String(ref || "").includes("/") ? ref.split("/", 2) : ["default", ref];
  return name ? link(`#/tasks/${encodeURIComponent(name)}?ns=${encodeURIComponent(ns)}`, ref) : "";
}

function expiry(a) {
  const at = (a.status || {}).expires_at;
  if (!at) return "";
  const left = (Date.parse(at) - Date.now()) / 1000;
  return h("span", { title: at }, left > 0 ? `in ${Math.ceil(left / 60)} min` : `expired ${ago(at)}`);
}

export async function approvalsPage({ main, query, signal, ns }) {
  const body = h("div", {});
  const who = h("input", { name: "decided_by", value: auth.user || "console", size: 14 });
  const live = h("span", { class: "live muted" }, "connecting…");
  const only = query.get("name") || "";
  const canDecide = can("writer");
  main.replaceChildren(h("div", { class: "title" }, h("h1", {}, "Tool approvals"), live),
    canDecide ? h("p", {}, h("label", {}, "decided by ", who)) : h("p", { class: "muted" }, "Your role may read approvals, not decide them."),
    body);
  const decide = async (a, verb) => {
    try {
      await request("POST", `/v1/tool-approvals/${encodeURIComponent(a.metadata.name)}/${verb}`,
        { params: { namespace: a.metadata.namespace }, body: { decided_by: who.value.trim() } });
      await draw();
    } catch (err) { body.prepend(errorBox(err)); }
  };
  const draw = async () => {
    const items = (await listAll("tool-approvals", { namespace: ns })).filter((a) => !only || a.metadata.name === only);
    const order = (a) => ((a.status || {}).phase || "Pending") === "Pending" ? 0 : 1;
    items.sort((a, b) => order(a) - order(b) || String(b.metadata.createdAt).localeCompare(String(a.metadata.createdAt)));
    body.replaceChildren(table([
      { title: "Approval", cell: (a) => link(`#/k/tool-approvals/${encodeURIComponent(a.metadata.name)}?ns=${a.metadata.namespace}`, a.metadata.name) },
      { title: "Phase", cell: (a) => badge((a.status || {}).phase || "Pending") },
      { title: "Task", cell: (a) => taskLink(a.spec.task_ref) },
      { title: "Agent", cell: (a) => a.spec.agent },
      { title: "Tool call", cell: (a) => h("div", {}, h("strong", {}, a.spec.tool), ` (${a.spec.operation_class || "write"})`,
        h("div", { class: "muted" }, "args ", h("code", { title: (a.metadata.annotations || {})[DIGEST] }, ((a.metadata.annotations || {})[DIGEST] || "").slice(0, 19) + "…")),
        a.spec.input ? h("div", { class: "muted clip", title: a.spec.input }, a.spec.input) : "") },
      { title: "Reason", cell: (a) => a.spec.reason || "" },
      { title: "Expires", cell: expiry },
      { title: "Decided", cell: (a) => (a.status || {}).decided_by ? `${a.status.decided_by} ${ago(a.status.decided_at)}` : "" },
      { title: "", cell: (a) => canDecide && ((a.status || {}).phase || "Pending") === "Pending" ? h("span", { class: "actions" },
        h("button", { type: "button", class: "approve", onclick: () => decide(a, "approve") }, "Approve"),
        h("button", { type: "button", class: "danger deny", onclick: () => decide(a, "deny") }, "Deny")) : "" },
    ], items, { empty: "No tool approval in this view.", rowAttrs: (a) => ({ "data-approval": a.metadata.name, "data-message": (a.metadata.annotations || {})[MESSAGE] || "" }) }));
  };
  await draw();
  let timer = null;
  watch("/v1/events/watch", { kind: "ToolApproval", namespace: ns }, () => {
    clearTimeout(timer);
    timer = setTimeout(() => draw().catch(() => {}), 150);
  }, signal, (s) => { live.textContent = s === "live" ? "● live" : "reconnecting…"; });
}

const FILTERS = ["task", "agent", "decision", "code", "subject"];

export async function auditPage({ main, query, signal, ns }) {
  const inputs = Object.fromEntries(FILTERS.map((f) => [f, h("input", { name: f, value: query.get(f) || "", placeholder: f, size: 12 })]));
  const apply = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const f of FILTERS) if (inputs[f].value.trim()) q.set(f, inputs[f].value.trim());
    location.hash = `#/audit${q.toString() ? `?${q}` : ""}`;
  };
  const filters = Object.fromEntries(FILTERS.map((f) => [f, query.get(f) || ""]));
  const live = h("span", { class: "live muted" }, "connecting…");
  const body = h("div", {});
  main.replaceChildren(h("div", { class: "title" }, h("h1", {}, "Audit trail"), live),
    h("form", { class: "filters", onsubmit: apply }, FILTERS.map((f) => inputs[f]), h("button", { type: "submit" }, "Filter"),
      h("span", { class: "muted" }, ns ? ` namespace ${ns}` : " all namespaces")),
    body);
  const records = [];
  let after = "";
  for (let i = 0; i < 20; i++) {  // newest last; read to the end (bounded)
    const page = await get("/v1/audit", { namespace: ns, ...filters, after });
    records.push(...(page.items || []));
    if (!page.continue) break;
    after = page.continue;
  }
  const draw = () => body.replaceChildren(table([
    { title: "When", cell: (r) => time(r.timestamp) },
    { title: "Namespace", cell: (r) => r.namespace },
    { title: "Task", cell: (r) => (r.task ? taskLink(`${r.namespace}/${r.task}`) : "") },
    { title: "Agent", cell: (r) => r.agent || "" },
    { title: "Decision", cell: (r) => badge(r.decision) },
    { title: "Subject", cell: (r) => `${r.subject_kind || ""} ${r.subject || ""}` },
    { title: "Code", cell: (r) => r.code || "" },
    { title: "Rule", cell: (r) => r.rule || "" },
    { title: "Reason", cell: (r) => r.reason || "" },
    { title: "By", cell: (r) => r.decided_by || "" },
  ], records.slice(-500).reverse(), { empty: "No audit record matches.", rowAttrs: (r) => ({ "data-decision": r.decision }) }));
  draw();
  watch("/v1/events/watch", { source: "governance", namespace: ns }, (event, data) => {
    const r = data.data || {};
    if (event !== "event" || !r.decision) return;
    if (FILTERS.some((f) => filters[f] && String(r[f] || "") !== filters[f])) return;
    records.push(r);
    draw();
  }, signal, (s) => { live.textContent = s === "live" ? "● live" : "reconnecting…"; });
}
