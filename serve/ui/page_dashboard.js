// The dashboard: tasks by phase over time, running tasks, waiting approvals, recent denials and
// dead letters, agents with live actors, and the Ray nodes with their load. Live over the
// task watch and the event stream.

import { get, listAll, watch } from "./api.js";
import { badge, h, link, svg, table, time } from "./ui.js";
import { itemHref } from "./page_resources.js";

export const PHASES = ["Pending", "Running", "WaitingApproval", "Succeeded", "Failed", "DeadLetter"];
const WINDOW_MIN = 30;

/** The phase of `task` at time `t` (ms), from its created, started and completed times. */
export function phaseAt(task, t) {
  const st = task.status || {};
  const created = Date.parse(task.metadata.createdAt || st.startedAt || "");
  if (Number.isNaN(created) || t < created) return null;
  const done = Date.parse(st.completedAt || "");
  if (!Number.isNaN(done) && t >= done) return st.phase;
  const started = Date.parse(st.startedAt || "");
  if (!Number.isNaN(started) && t >= started) return st.phase === "WaitingApproval" ? "WaitingApproval" : "Running";
  return "Pending";
}

function chart(tasks) {
  const now = Date.now();
  const step = 60_000;
  const points = [];
  for (let i = WINDOW_MIN; i >= 0; i--) {
    const t = now - i * step;
    const counts = Object.fromEntries(PHASES.map((p) => [p, 0]));
    for (const task of tasks) {
      const p = phaseAt(task, t);
      if (p && counts[p] !== undefined) counts[p] += 1;
    }
    points.push(counts);
  }
  const W = 620, H = 160, bw = W / points.length;
  const max = Math.max(1, ...points.map((c) => PHASES.reduce((s, p) => s + c[p], 0)));
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H + 18}`, role: "img", "aria-label": "tasks by phase over the last 30 minutes" });
  points.forEach((c, i) => {
    let y = H;
    for (const p of PHASES) {
      const hgt = (c[p] / max) * H;
      if (hgt > 0) root.append(svg("rect", { x: i * bw + 1, y: y - hgt, width: bw - 2, height: hgt, class: `ph-${p}` }, svg("title", {}, `${p}: ${c[p]}`)));
      y -= hgt;
    }
  });
  root.append(svg("text", { x: 0, y: H + 14, class: "axis" }, `-${WINDOW_MIN} min`), svg("text", { x: W - 24, y: H + 14, class: "axis" }, "now"));
  return h("div", {}, root, h("div", { class: "legend" }, PHASES.map((p) => h("span", {}, h("i", { class: `ph-${p}` }), ` ${p}`))));
}

function card(title, ...body) { return h("section", { class: "card" }, h("h2", {}, title), ...body); }

function nodesCard(runtime, workers) {
  const nodes = (runtime.ray || {}).nodes || [];
  const byNode = Object.fromEntries(workers.map((w) => [(w.metadata.annotations || {})["orloj.dev/ray-node-id"], w]));
  return card("Ray nodes", table([
    { title: "Node", cell: (n) => (byNode[n.node_id] ? link(`#/k/workers/${byNode[n.node_id].metadata.name}?ns=default`, byNode[n.node_id].metadata.name) : n.node_id.slice(0, 12)) },
    { title: "Address", cell: (n) => n.address },
    { title: "State", cell: (n) => badge(n.alive ? "Ready" : "NotReady") },
    { title: "CPU / GPU", cell: (n) => `${n.resources.CPU || 0} / ${n.resources.GPU || 0}` },
    { title: "Memory", cell: (n) => (n.resources.memory ? `${(n.resources.memory / 2 ** 30).toFixed(1)} GiB` : "") },
    { title: "Turns in flight", cell: (n) => String(((byNode[n.node_id] || {}).status || {}).currentTasks || 0) },
    { title: "Region", cell: (n) => (n.labels || {})["orloj.dev/region"] || "default" },
  ], nodes, { empty: "No Ray node reported." }),
  (runtime.ray || {}).dashboard_url ? h("p", {}, h("a", { href: runtime.ray.dashboard_url, target: "_blank", rel: "noopener" }, "Ray dashboard")) : "");
}

export async function dashboard({ main, signal, ns }) {
  const [tasks, approvals, agents, runtime, workers] = await Promise.all([
    listAll("tasks", { namespace: ns }), listAll("tool-approvals", { namespace: ns }), listAll("agents", { namespace: ns }),
    get("/v1/runtime"), listAll("workers", { namespace: "default" })]);
  const denials = [];
  let after = "";
  for (let i = 0; i < 20; i++) {
    const page = await get("/v1/audit", { namespace: ns, decision: "denied", after });
    denials.push(...(page.items || []));
    if (!page.continue) break;
    after = page.continue;
  }
  const byKey = new Map(tasks.map((t) => [`${t.metadata.namespace}/${t.metadata.name}`, t]));
  const live = h("span", { class: "live muted" }, "connecting…");
  const grid = h("div", { class: "dash" });
  const draw = () => {
    const all = [...byKey.values()];
    const counts = Object.fromEntries(PHASES.map((p) => [p, 0]));
    for (const t of all) counts[(t.status || {}).phase || "Pending"] = (counts[(t.status || {}).phase || "Pending"] || 0) + 1;
    const running = all.filter((t) => ["Running", "Pending"].includes((t.status || {}).phase || "Pending"));
    const dead = all.filter((t) => (t.status || {}).phase === "DeadLetter")
      .sort((a, b) => String(b.status.completedAt).localeCompare(String(a.status.completedAt))).slice(0, 10);
    const waiting = approvals.filter((a) => ((a.status || {}).phase || "Pending") === "Pending");
    const withActors = agents.filter((a) => ((a.status || {}).actors || []).length);
    grid.replaceChildren(
      h("section", { class: "card wide" }, h("h2", {}, "Tasks by phase"),
        h("p", { class: "counts" }, PHASES.map((p) => h("span", { class: "count", "data-count": p }, badge(p), ` ${counts[p] || 0}`))),
        chart(all)),
      card("Running and pending tasks", table([
        { title: "Task", cell: (t) => link(itemHref("tasks", t), t.metadata.name) },
        { title: "Phase", cell: (t) => badge((t.status || {}).phase || "Pending") },
        { title: "System", cell: (t) => (t.spec || {}).system || "" },
        { title: "Started", cell: (t) => time((t.status || {}).startedAt) },
      ], running.slice(0, 15), { empty: "Nothing running." })),
      card("Waiting approvals", table([
        { title: "Approval", cell: (a) => link(`#/approvals?name=${a.metadata.name}`, a.metadata.name) },
        { title: "Tool", cell: (a) => a.spec.tool },
        { title: "Task", cell: (a) => a.spec.task_ref },
      ], waiting.slice(0, 10), { empty: "No approval waits." })),
      card("Recent denials", table([
        { title: "When", cell: (r) => time(r.timestamp) },
        { title: "Task", cell: (r) => r.task || "" },
        { title: "Subject", cell: (r) => r.subject || "" },
        { title: "Code", cell: (r) => badge(r.code || "denied") },
      ], denials.slice(-10).reverse(), { empty: "No denial recorded." }), h("p", {}, link("#/audit?decision=denied", "all denials"))),
      card("Dead letters", table([
        { title: "Task", cell: (t) => link(itemHref("tasks", t), t.metadata.name) },
        { title: "When", cell: (t) => time(t.status.completedAt) },
        { title: "Error", cell: (t) => t.status.lastError || "" },
      ], dead, { empty: "No dead letter." })),
      card("Agents with live actors", table([
        { title: "Agent", cell: (a) => link(`#/agents-runtime`, `${a.metadata.namespace}/${a.metadata.name}`) },
        { title: "Actors", cell: (a) => String(a.status.actors.length) },
        { title: "In flight", cell: (a) => String(a.status.actors.reduce((s, x) => s + Number(x.inflight || 0), 0)) },
      ], withActors, { empty: `${agents.length} agents, none with a live actor right now.` })),
      nodesCard(runtime, workers));
  };
  main.replaceChildren(h("div", { class: "title" }, h("h1", {}, "Dashboard"), live), grid);
  draw();
  let pending = false;
  const redraw = () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } };
  watch("/v1/tasks/watch", { namespace: ns }, (event, data) => {
    if (event !== "resource") return;
    const k = `${data.resource.metadata.namespace}/${data.resource.metadata.name}`;
    if (data.type === "deleted") byKey.delete(k); else byKey.set(k, data.resource);
    redraw();
  }, signal, (s) => { live.textContent = s === "live" ? "● live" : "reconnecting…"; });
  watch("/v1/events/watch", { namespace: ns }, (event, data) => {
    if (data.kind === "ToolApproval" && data.type && data.type.startsWith("resource.")) {
      listAll("tool-approvals", { namespace: ns }).then((items) => { approvals.splice(0, approvals.length, ...items); redraw(); }).catch(() => {});
    } else if (data.kind === "AuditRecord" && (data.data || {}).decision === "denied") {
      denials.push(data.data);
      redraw();
    } else if (data.kind === "Agent" && data.type && data.type.startsWith("resource.")) {
      listAll("agents", { namespace: ns }).then((items) => { agents.splice(0, agents.length, ...items); redraw(); }).catch(() => {});
    }
  }, signal);
}
