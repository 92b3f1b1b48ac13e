// The API client of the console: bearer token (sessionStorage), JSON requests, and watch
// streams read with fetch (EventSource cannot send an Authorization header).

const TOKEN_KEY = "orloj.token";

export const auth = { mode: "off", role: "admin", user: "", ready: false };

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    const err = body && body.error;
    const text = err && typeof err === "object" ? `${err.message}${err.field ? ` (field ${err.field})` : ""}` : err;
    super(text || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  if (token()) h.Authorization = `Bearer ${token()}`;
  return h;
}

export function qs(params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function request(method, path, { params, body, contentType, ifMatch } = {}) {
  const extra = {};
  if (body !== undefined) extra["Content-Type"] = contentType || "application/json";
  if (ifMatch) extra["If-Match"] = ifMatch;
  const resp = await fetch(path + qs(params), {
    method, headers: headers(extra),
    body: body === undefined ? undefined : (typeof body === "string" ? body : JSON.stringify(body)),
  });
  const text = await resp.text();
  let data = text;
  if ((resp.headers.get("content-type") || "").includes("json")) {
    try { data = JSON.parse(text); } catch { /* keep the text */ }
  }
  if (resp.status === 401 && auth.mode === "token") {
    setToken("");
    location.hash = "#/login";
  }
  if (!resp.ok) throw new ApiError(resp.status, typeof data === "object" ? data : { error: text });
  return data;
}

export const get = (path, params) => request("GET", path, { params });

/** Every item of a collection (follows `continue`, at most `pages` pages). */
export async function listAll(plural, params = {}, pages = 20) {
  const items = [];
  let after;
  for (let i = 0; i < pages; i++) {
    const page = await get(`/v1/${plural}`, { ...params, after });
    items.push(...(page.items || []));
    if (!page.continue || page.continue === after) break;
    after = page.continue;
  }
  return items;
}

export async function loadAuth() {
  const config = await get("/v1/auth/config");
  auth.mode = config.mode || "off";
  if (auth.mode !== "token") { Object.assign(auth, { role: "admin", user: "", ready: true }); return auth; }
  const me = token() ? await get("/v1/auth/me") : { authenticated: false };
  Object.assign(auth, { role: me.authenticated ? me.role : "", user: me.username || "", ready: me.authenticated });
  return auth;
}

const SATISFIED_BY = {
  reader: ["reader", "writer", "controller", "admin"],
  writer: ["writer", "admin"],
  controller: ["controller", "admin"],
  admin: ["admin"],
};

/** Whether the current role may do what `required` needs (serve/auth.py SATISFIED_BY). */
export function can(required) { return (SATISFIED_BY[required] || []).includes(auth.role); }

/**
 * Follow a server-sent event stream: `onEvent(name, data)` for each event, until `signal`
 * aborts. A dropped stream is opened again after a pause (1 s, doubling to 15 s): the server
 * pushes, the console never polls.
 */
export function watch(path, params, onEvent, signal, onState = () => {}) {
  let delay = 1000;
  (async () => {
    while (!signal.aborted) {
      try {
        const resp = await fetch(path + qs(params), { headers: headers({ Accept: "text/event-stream" }), signal });
        if (!resp.ok) throw new ApiError(resp.status, {});
        onState("live");
        delay = 1000;
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const chunk = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let name = "message";
            const data = [];
            for (const line of chunk.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
            }
            if (!data.length) continue;
            try { onEvent(name, JSON.parse(data.join("\n"))); } catch (err) { console.warn("watch event", err); }
          }
        }
      } catch (err) {
        if (signal.aborted) return;
      }
      if (signal.aborted) return;
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  })();
}
