// Task detail: the system's graph with each node's state, a trace waterfall (one bar per
// agent turn, its model and tool calls inside, tokens, durations, denials by code), messages
// with lifecycle and attempts, logs and output, all live over the task's watch stream; and,
// while the task runs, the agents' model output as it is written (its token stream).

import { get, watch } from "./api.js";
import { badge, h, kv, link, ms, svg, table, time } from "./ui.js";
import { yamlView } from "./page_resources.js";

const CALLS = new Set(["model_call", "model_error", "tool_call", "tool_error"]);
const MARKS = new Set(["policy_violation", "tool_permission_denied", "token_budget_exceeded", "rate_limited",
  "approval_denied", "approval_expired", "governance_error", "tool_approval_pending", "model_not_allowed", "tool_blocked"]);

// -- graph ------------------------------------------------------------------------------------

export function systemGraph(system) {
  const spec = (system && system.spec) || {};
  const nodes = [...(spec.agents || [])];
  const edges = [];
  for (const [from, node] of Object.entries(spec.graph || {})) {
    if (!nodes.includes(from)) nodes.push(from);
    const targets = [...((node && node.edges) || []).map((e) => e.to), ...(node && node.next ? [node.next] : [])];
    for (const to of targets) {
      if (!to) continue;
      if (!nodes.includes(to)) nodes.push(to);
      edges.push([from, to]);
    }
  }
  return { nodes, edges };
}

function nodeStates(task) {
  const st = task.status || {};
  const state = {};
  const rank = { idle: 0, succeeded: 1, queued: 2, running: 3, failed: 4 };
  const raise = (node, s) => { if ((rank[s] || 0) > (rank[state[node]] || 0)) state[node] = s; };
  for (const row of st.trace || []) if (row.type === "agent_end") raise(row.agent, "succeeded");
  for (const m of st.messages || []) {
    const p = String(m.phase || "").toLowerCase();
    if (p === "running") raise(m.to_agent, "running");
    else if (p === "queued" || p === "retrypending") raise(m.to_agent, "queued");
    else if (p === "deadletter") raise(m.to_agent, "failed");
  }
  return state;
}

function depths(graph) {
  const preds = Object.fromEntries(graph.nodes.map((n) => [n, []]));
  for (const [a, b] of graph.edges) preds[b].push(a);
  const depth = {};
  const visit = (n, seen) => {
    if (depth[n] !== undefined) return depth[n];
    if (seen.has(n)) return 0;  // a loop: the back edge does not push the node further right
    seen.add(n);
    depth[n] = preds[n].length ? 1 + Math.max(...preds[n].map((p) => visit(p, seen))) : 0;
    return depth[n];
  };
  graph.nodes.forEach((n) => visit(n, new Set()));
  return depth;
}

export function graphView(graph, states) {
  if (!graph.nodes.length) return h("p", { class: "empty" }, "This task's system has no agents to draw.");
  const depth = depths(graph);
  const cols = {};
  for (const n of graph.nodes) (cols[depth[n]] = cols[depth[n]] || []).push(n);
  const W = 190, H = 44, GX = 70, GY = 26;
  const pos = {};
  for (const [d, names] of Object.entries(cols)) names.forEach((n, i) => { pos[n] = { x: 10 + d * (W + GX), y: 10 + i * (H + GY) }; });
  const width = 20 + (Math.max(...Object.keys(cols).map(Number)) + 1) * (W + GX) - GX;
  const height = 20 + Math.max(...Object.values(cols).map((c) => c.length)) * (H + GY) - GY;
  const root = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "agent graph" },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  for (const [a, b] of graph.edges) {
    const p = pos[a], q = pos[b];
    const back = depth[b] <= depth[a];
    const x1 = p.x + W, y1 = p.y + H / 2, x2 = q.x, y2 = q.y + H / 2;
    const d = back ? `M${p.x + W / 2},${p.y + H} C${p.x + W / 2},${p.y + H + 40} ${q.x + W / 2},${q.y + H + 40} ${q.x + W / 2},${q.y + H}`
      : `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
    root.append(svg("path", { d, class: "edge", "marker-end": "url(#arrow)" }));
  }
  for (const n of graph.nodes) {
    const s = states[n] || "idle";
    root.append(svg("g", { class: `node ${s}`, "data-node": n, "data-state": s, transform: `translate(${pos[n].x},${pos[n].y})` },
      svg("title", {}, `${n}: ${s}`),
      svg("rect", { width: W, height: H, rx: 8 }),
      svg("text", { x: 10, y: 18 }, n.length > 26 ? `${n.slice(0, 25)}…` : n),
      svg("text", { x: 10, y: 35, class: "state" }, s)));
  }
  return h("div", { class: "graph-wrap" }, root);
}

// -- trace waterfall -------------------------------------------------------------------------

export function turns(trace) {
  const pending = {};
  const out = [];
  for (const row of trace || []) {
    const agent = row.agent || "";
    if (CALLS.has(row.type) || MARKS.has(row.type)) { (pending[agent] = pending[agent] || []).push(row); continue; }
    const closes = { agent_end: "ok", agent_message_deadletter: "failed" }[row.type];
    const calls = pending[agent] || [];
    if (!closes && !(calls.length && calls.some((c) => c.type === "tool_approval_pending"))) continue;
    delete pending[agent];
    const end = Date.parse(row.timestamp);
    const spent = calls.reduce((s, c) => s + Number(c.latency_ms || 0), 0);
    const dur = closes === "ok" ? Number(row.latency_ms || spent) : spent;
    out.push({ agent, outcome: closes || "waiting", start: end - dur, end, dur, row, calls,
      tokens: Number(row.tokens || calls.reduce((s, c) => s + Number(c.tokens || 0), 0)) });
  }
  for (const [agent, calls] of Object.entries(pending)) {  // a paused turn (waiting for approval)
    const end = Math.max(...calls.map((c) => Date.parse(c.timestamp)));
    const dur = calls.reduce((s, c) => s + Number(c.latency_ms || 0), 0);
    out.push({ agent, outcome: calls.some((c) => c.type === "tool_approval_pending") ? "waiting" : "open",
      start: end - dur, end, dur, row: calls[calls.length - 1], calls, tokens: 0 });
  }
  return out.sort((a, b) => a.start - b.start);
}

function callLabel(c) {
  if (c.type.startsWith("model")) return `${c.type === "model_error" ? "model error " + (c.error_code || "") : "model " + (c.model || "")} ${c.tokens ? c.tokens + " tok" : ""} ${ms(c.latency_ms)}`;
  if (c.type.startsWith("tool")) return `${c.type === "tool_error" ? "tool error " + (c.error_code || "") : "tool"} ${c.tool || ""} ${ms(c.latency_ms)}`;
  return `${c.error_code || c.type}`;
}

export function waterfall(task) {
  const list = turns((task.status || {}).trace);
  if (!list.length) return h("p", { class: "empty" }, "No agent turn recorded yet.");
  const t0 = Math.min(...list.map((t) => t.start));
  const t1 = Math.max(...list.map((t) => t.end), t0 + 1);
  const pct = (v) => `${(100 * (v - t0)) / (t1 - t0)}%`;
  const width = (d) => `${Math.max((100 * d) / (t1 - t0), 0.4)}%`;
  return h("div", { class: "waterfall" },
    h("div", { class: "wf-axis" }, h("span", {}, "0"), h("span", {}, ms(t1 - t0))),
    list.map((t) => {
      let offset = t.start;
      const inner = t.calls.map((c) => {
        const d = Number(c.latency_ms || 0);
        const el = MARKS.has(c.type)
          ? h("span", { class: `wf-mark ${c.type === "tool_approval_pending" ? "wait" : "bad"}`, style: `left:${pct(offset)}`, title: c.message || c.error_code },
            c.error_code || c.type)
          : h("span", { class: `wf-call ${c.type}`, style: `left:${pct(offset)};width:${width(d)}`, title: `${callLabel(c)}\n${c.message || ""}` });
        offset += d;
        return el;
      });
      const denials = t.calls.filter((c) => MARKS.has(c.type) && c.error_code && c.type !== "tool_approval_pending").map((c) => c.error_code);
      return h("div", { class: "wf-row", "data-agent": t.agent, "data-outcome": t.outcome },
        h("div", { class: "wf-label" }, h("strong", {}, t.agent),
          h("span", { class: "muted" }, ` ${ms(t.dur)} · ${t.tokens} tok · ${t.calls.filter((c) => c.type.startsWith("model")).length} model · ${t.calls.filter((c) => c.type.startsWith("tool_")).length} tool`),
          denials.length ? h("span", { class: "badge bad" }, `denied: ${denials.join(", ")}`) : ""),
        h("div", { class: "wf-track" },
          h("span", { class: `wf-bar ${t.outcome}`, style: `left:${pct(t.start)};width:${width(t.dur)}`, title: `${t.agent} ${ms(t.dur)} ${t.outcome}` }),
          inner));
    }),
    h("details", {}, h("summary", {}, "Calls"), table([
      { title: "Agent", cell: (r) => r.agent },
      { title: "Step", cell: (r) => r.step || "" },
      { title: "Type", cell: (r) => r.type },
      { title: "Model / tool", cell: (r) => r.tool || r.model || "" },
      { title: "Tokens", cell: (r) => r.tokens || "" },
      { title: "Duration", cell: (r) => (r.latency_ms !== undefined ? ms(r.latency_ms) : "") },
      { title: "Code", cell: (r) => (r.error_code ? badge(r.error_code) : "") },
    ], list.flatMap((t) => t.calls))));
}

// -- messages, logs, output ------------------------------------------------------------------

function latency(m) {
  const a = Date.parse(m.timestamp), b = Date.parse(m.processed_at);
  return Number.isNaN(a) || Number.isNaN(b) ? "" : ms(b - a);
}

export function messagesView(task) {
  const msgs = (task.status || {}).messages || [];
  const counts = {};
  for (const m of msgs) counts[m.phase] = (counts[m.phase] || 0) + 1;
  return h("div", {},
    h("p", {}, Object.entries(counts).map(([p, n]) => [badge(p), ` ${n}  `])),
    table([
      { title: "From → to", cell: (m) => `${m.from_agent} → ${m.to_agent}` },
      { title: "Phase", cell: (m) => badge(m.phase) },
      { title: "Attempts", cell: (m) => `${m.attempts || 0} / ${m.max_attempts || 1}` },
      { title: "Branch", cell: (m) => m.branch_id || "" },
      { title: "Sent", cell: (m) => time(m.timestamp) },
      { title: "Latency", cell: latency },
      { title: "Worker", cell: (m) => m.worker || "" },
      { title: "Last error", cell: (m) => m.last_error || "" },
      { title: "Id", cell: (m) => h("code", { title: m.message_id }, (m.message_id || "").split("/").slice(-3).join("/")) },
    ], msgs, { empty: "No message yet.", rowAttrs: (m) => ({ "data-message": m.message_id }) }));
}

function outputView(task) {
  const out = (task.status || {}).output || {};
  const rest = Object.entries(out).filter(([k]) => k !== "final_output" && k !== "last_output");
  return h("div", {},
    h("h3", {}, "Final output"),
    out.final_output ? h("pre", { class: "output" }, out.final_output) : h("p", { class: "empty" }, "No final output yet."),
    h("h3", {}, "Output fields"), kv(rest.map(([k, v]) => [k, String(v)])));
}

// -- live model output -------------------------------------------------------------------------

const TERMINAL = new Set(["Succeeded", "Failed", "DeadLetter"]);
const LIVE_TURNS = 30;  // blocks kept on the page; the trace has every turn's text

/** The task's token stream (`/v1/tasks/{name}/stream`) as one block per agent turn and step. */
export function liveOutput(name, ns, signal) {
  const box = h("section", { class: "live-output", hidden: true }, h("h3", {}, "Live model output"));
  const blocks = new Map();
  const params = { namespace: ns };  // `after` follows the last event: a reconnect resumes there
  const stop = new AbortController();
  signal.addEventListener("abort", () => stop.abort());
  const block = (d) => {
    const key = `${d.message_id}|${d.agent}|${d.step}`;
    if (!blocks.has(key)) {
      const text = h("pre", { class: "live-text" }, "");
      const el = h("div", { class: "live-turn running", "data-agent": d.agent, "data-step": d.step, "data-message": d.message_id },
        h("div", { class: "muted" }, `${d.agent} · step ${d.step}`), text);
      blocks.set(key, { el, text });
      box.append(el);
      box.hidden = false;
      while (blocks.size > LIVE_TURNS) {
        const [first, old] = blocks.entries().next().value;
        old.el.remove();
        blocks.delete(first);
      }
    }
    return blocks.get(key);
  };
  watch(`/v1/tasks/${encodeURIComponent(name)}/stream`, params, (event, data) => {
    if (typeof data.seq === "number") params.after = data.seq;
    if (event === "token") {
      const b = block(data);
      b.text.textContent = data.restart ? "" : b.text.textContent + (data.delta || "");
    } else if (event === "turn_end") {
      for (const b of blocks.values()) if (b.el.dataset.message === data.message_id) b.el.classList.replace("running", "done");
    } else if (event === "end") {
      box.dataset.ended = data.phase || "ended";
      stop.abort();  // the task is over: no reconnect
    }
  }, stop.signal);
  return box;
}

// -- the page --------------------------------------------------------------------------------

export async function taskPage({ main, params, query, signal }) {
  const name = params[0];
  const ns = query.get("ns") || "default";
  let task = await get(`/v1/tasks/${encodeURIComponent(name)}`, { namespace: ns });
  let system = null;
  const systemName = (task.spec || {}).system;
  if (systemName) {
    try { system = await get(`/v1/agent-systems/${encodeURIComponent(systemName)}`, { namespace: ns }); } catch { system = null; }
  }
  const logs = h("pre", { class: "logs" }, "");
  const refreshLogs = async () => {
    try { logs.textContent = ((await get(`/v1/tasks/${encodeURIComponent(name)}/logs`, { namespace: ns })).logs || []).join("\n"); } catch (err) { logs.textContent = String(err.message); }
  };
  const graph = () => {
    const g = systemGraph(system);
    if (!g.nodes.length) for (const row of (task.status || {}).trace || []) if (row.agent && !g.nodes.includes(row.agent)) g.nodes.push(row.agent);
    return graphView(g, nodeStates(task));
  };
  const views = [["Graph", graph], ["Trace", () => waterfall(task)], ["Messages", () => messagesView(task)],
    ["Logs", () => logs], ["Output", () => outputView(task)], ["YAML", () => yamlView(task)]];
  let active = Math.max(0, views.findIndex(([v]) => v.toLowerCase() === (query.get("tab") || "graph")));
  const header = h("div", {});
  const bar = h("div", { class: "tabs", role: "tablist" });
  const panel = h("div", { class: "panel" });
  const live = h("span", { class: "live muted" }, "connecting…");
  const drawHeader = () => {
    const st = task.status || {};
    header.replaceChildren(
      h("div", { class: "title" }, h("h1", {}, `Task ${name}`), h("span", { id: "task-phase" }, badge(st.phase || "Pending")), live),
      kv([["namespace", ns], ["system", systemName ? link(`#/k/agent-systems/${encodeURIComponent(systemName)}?ns=${ns}`, systemName) : ""],
        ["attempts", st.attempts], ["claimed by", st.claimedBy], ["created", time(task.metadata.createdAt)],
        ["started", time(st.startedAt)], ["completed", time(st.completedAt)],
        ["tokens", (st.output || {}).tokens_used_total], ["error", st.errorCode ? [badge(st.errorCode), " ", st.lastError || ""] : st.lastError],
        ["waiting for", st.pendingApproval ? link(`#/approvals?name=${st.pendingApproval}`, st.pendingApproval) : ""]]));
  };
  const drawPanel = () => {
    [...bar.children].forEach((b, j) => b.classList.toggle("active", j === active));
    panel.replaceChildren(views[active][1]());
  };
  views.forEach(([label], i) => bar.append(h("button", { role: "tab", type: "button", "data-tab": label.toLowerCase(), onclick: () => { active = i; drawPanel(); } }, label)));
  drawHeader();
  drawPanel();
  const spoken = TERMINAL.has((task.status || {}).phase) ? "" : liveOutput(name, ns, signal);
  main.replaceChildren(header, spoken, bar, panel);
  await refreshLogs();
  let logTimer = null;
  watch("/v1/tasks/watch", { namespace: ns, name }, (event, data) => {
    if (event !== "resource" || data.type === "deleted") return;
    task = data.resource;
    drawHeader();
    drawPanel();
    clearTimeout(logTimer);
    logTimer = setTimeout(refreshLogs, 300);
  }, signal, (s) => { live.textContent = s === "live" ? "● live" : "reconnecting…"; });
}
