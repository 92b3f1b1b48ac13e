// Agents and their Ray actors: which actor runs which agent, on which node, its replicas and
// mailbox depth, with a link to the actor in the Ray dashboard (what that dashboard cannot tell).

import { get, listAll, watch } from "./api.js";
import { badge, h, link, table, time } from "./ui.js";

export function actorLink(dashboard, actor) {
  if (!actor.actor_id) return actor.name || "";
  return dashboard ? h("a", { href: `${dashboard.replace(/\/$/, "")}/#/actors/${actor.actor_id}`, target: "_blank", rel: "noopener" }, actor.name || actor.actor_id)
    : h("span", { title: actor.actor_id }, actor.name || actor.actor_id);
}

function nodeCell(actor) {
  const id = actor.node_id || "";
  return id ? link(`#/k/workers/node-${id.slice(0, 12)}?ns=default`, `node-${id.slice(0, 12)}`) : "";
}

function replicas(agent) {
  const spec = agent.spec || {};
  if (spec.autoscaling) return `${spec.autoscaling.min_replicas || 1}–${spec.autoscaling.max_replicas || 1} (autoscaling)`;
  return String(spec.replicas || 1);
}

export function agentCard(agent, dashboard) {
  const st = agent.status || {};
  const actors = st.actors || [];
  const depth = actors.reduce((s, a) => s + Number(a.inflight || 0), 0);
  const reclaim = st.lastReclaim;
  return h("section", { class: "card agent", "data-agent": agent.metadata.name },
    h("div", { class: "title" }, h("h2", {}, link(`#/k/agents/${encodeURIComponent(agent.metadata.name)}?ns=${agent.metadata.namespace}`, agent.metadata.name)),
      badge(st.phase), h("span", { class: "muted" }, ` ${agent.metadata.namespace} · model ${agent.spec.model_ref || agent.spec.model || "?"} · replicas ${replicas(agent)} · mailbox depth ${depth}`)),
    st.waiting ? h("p", { class: "badge wait" }, `waiting: ${st.waiting}`) : "",
    table([
      { title: "Actor", cell: (a) => actorLink(dashboard, a) },
      { title: "Node", cell: nodeCell },
      { title: "Placement", cell: (a) => a.placement || "any" },
      { title: "Replica", cell: (a) => String(a.replica ?? 0) },
      { title: "In flight", cell: (a) => String(a.inflight ?? 0) },
    ], actors, { empty: "No live actor: one is started on the agent's next turn.", rowAttrs: (a) => ({ "data-actor": a.name || "" }) }),
    h("p", { class: "muted" }, st.lastTurnAt ? ["last turn ", time(st.lastTurnAt)] : "no turn yet",
      reclaim ? [" · last reclaimed ", time(reclaim.at), ` (${reclaim.reason}${reclaim.actor ? `, ${reclaim.actor}` : ""})`] : ""));
}

export async function agentsPage({ main, signal, ns }) {
  const runtime = await get("/v1/runtime");
  const dashboard = (runtime.ray || {}).dashboard_url || "";
  const live = h("span", { class: "live muted" }, "connecting…");
  const body = h("div", { class: "cards" });
  main.replaceChildren(h("div", { class: "title" }, h("h1", {}, "Agents and their actors"), live),
    h("p", { class: "muted" }, dashboard ? ["Actor names link to the ", h("a", { href: dashboard, target: "_blank", rel: "noopener" }, "Ray dashboard"), "."]
      : "The Ray dashboard is off on this cluster (orloj up starts it): actor ids are shown without links."),
    body);
  const items = new Map();
  const key = (o) => `${o.metadata.namespace || "default"}/${o.metadata.name}`;
  for (const a of await listAll("agents", { namespace: ns })) items.set(key(a), a);
  const draw = () => body.replaceChildren(...[...items.values()].sort((a, b) => key(a).localeCompare(key(b))).map((a) => agentCard(a, dashboard)));
  draw();
  if (!items.size) body.replaceChildren(h("p", { class: "empty" }, "No agent in this view."));
  watch("/v1/agents/watch", { namespace: ns }, (event, data) => {
    if (event !== "resource") return;
    if (data.type === "deleted") items.delete(key(data.resource)); else items.set(key(data.resource), data.resource);
    draw();
  }, signal, (s) => { live.textContent = s === "live" ? "● live" : "reconnecting…"; });
}
