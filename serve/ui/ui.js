// Small DOM helpers of the console: element builder, badges, tables, times, a YAML dumper.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  append(el, children);
  return el;
}

const PHASE_CLASS = {
  succeeded: "ok", ready: "ok", approved: "ok", running: "run", active: "run", connecting: "run",
  pending: "wait", queued: "wait", waitingapproval: "wait", retrypending: "wait", notready: "warn",
  failed: "bad", deadletter: "bad", denied: "bad", error: "bad", expired: "warn",
};

export function badge(phase) {
  const text = phase || "—";
  return h("span", { class: `badge ${PHASE_CLASS[String(text).toLowerCase()] || "none"}`, "data-phase": text }, text);
}

export function table(columns, rows, { empty = "Nothing here yet.", rowAttrs } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c.title)))),
    h("tbody", {}, rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : {}, columns.map((c) => h("td", {}, c.cell(r)))))));
}

export function link(href, text) { return h("a", { href }, text); }

export function ago(ts) {
  const t = Date.parse(ts);
  if (!ts || Number.isNaN(t)) return "";
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function time(ts) { return ts ? h("time", { datetime: ts, title: ts }, ago(ts)) : ""; }

export function ms(value) {
  const n = Number(value || 0);
  return n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${n} ms`;
}

export function labels(obj) {
  const l = (obj.metadata || {}).labels || {};
  return h("span", { class: "labels" }, Object.entries(l).map(([k, v]) => h("span", { class: "label" }, `${k}=${v}`)));
}

export function errorBox(err) { return h("div", { class: "error", role: "alert" }, String(err.message || err)); }

export function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

// -- YAML -------------------------------------------------------------------------------------

const PLAIN = /^[A-Za-z_/][\w./ -]*$/;
const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;

function scalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  const s = String(v);
  if (s.includes("\n")) return null;  // block scalar
  if (s && PLAIN.test(s) && !RESERVED.test(s) && !s.endsWith(" ") && !/: |\s#/.test(s)) return s;
  return JSON.stringify(s);
}

function key(k) { return PLAIN.test(k) && !RESERVED.test(k) && !k.includes(": ") ? k : JSON.stringify(k); }

/** YAML for a JSON value (what the API returns reads back as the same JSON). */
export function toYAML(value, indent = "") {
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return value.map((item) => {
      const body = toYAML(item, indent + "  ");
      const inline = typeof item !== "object" || item === null || (Array.isArray(item) ? !item.length : !Object.keys(item).length);
      return `${indent}- ${inline ? body.trimStart() : body.slice(indent.length + 2)}`;
    }).join("\n");
  }
  if (value && typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return "{}";
    return entries.map(([k, v]) => {
      if (v && typeof v === "object" && (Array.isArray(v) ? v.length : Object.keys(v).length)) {
        return `${indent}${key(k)}:\n${toYAML(v, indent + "  ")}`;
      }
      if (typeof v === "string" && v.includes("\n")) {
        const pad = indent + "  ";
        return `${indent}${key(k)}: |${v.endsWith("\n") ? "" : "-"}\n${v.replace(/\n$/, "").split("\n").map((l) => (l ? pad + l : "")).join("\n")}`;
      }
      return `${indent}${key(k)}: ${v && typeof v === "object" ? toYAML(v) : scalar(v)}`;
    }).join("\n");
  }
  const s = scalar(value);
  return s === null ? JSON.stringify(value) : s;
}
