"""A synchronous Python client for the orloj-ray REST API (the one the ``orloj`` CLI uses).

    from orloj_ray import Client

    c = Client()                                   # $ORLOJCTL_SERVER, $ORLOJ_SERVER or :8080
    c.apply("examples/blueprints/pipeline")         # validated locally first, then POSTed
    task = c.run_task("bp-pipeline-system", {"topic": "AI copilots"})
    print(task["status"]["phase"], task["status"]["output"])

Errors are the ``orloj_ray.errors`` tree, rebuilt from the server's JSON error body:

    OrlojError
    ├── InvalidResource   400 (and local manifest errors: ManifestErrors)
    ├── NotFound          404
    ├── Conflict          409
    ├── TooLarge          413
    ├── Unavailable       503, and "cannot reach orloj-ray at <url>" when the connection fails
    └── WaitTimeout       wait()/run_task() ran out of time (also a TimeoutError)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orloj_ray.errors import Conflict, InvalidResource, NotFound, OrlojError, TooLarge, Unavailable
from orloj_ray.resources.kinds import KindInfo, kind_info

DEFAULT_SERVER = "http://127.0.0.1:8080"
TERMINAL_TASK_PHASES = frozenset({"Succeeded", "Failed", "DeadLetter"})
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

_ERRORS_BY_STATUS: dict[int, type[OrlojError]] = {
    400: InvalidResource, 404: NotFound, 409: Conflict, 413: TooLarge, 503: Unavailable,
}


class WaitTimeout(OrlojError, TimeoutError):
    """``wait``/``run_task`` gave up; ``resource`` is the last object seen (or None)."""

    code = "timeout"
    status = 504

    def __init__(self, message: str, *, resource: dict | None = None):
        super().__init__(message)
        self.resource = resource


def default_server() -> str:
    """``$ORLOJCTL_SERVER``, else ``$ORLOJ_SERVER``, else ``http://127.0.0.1:8080`` (upstream order)."""
    for var in ("ORLOJCTL_SERVER", "ORLOJ_SERVER"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return DEFAULT_SERVER


def default_token() -> str | None:
    for var in ("ORLOJCTL_API_TOKEN", "ORLOJ_API_TOKEN"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def error_from_response(status: int, body: str) -> OrlojError:
    """Rebuild an ``orloj_ray.errors`` exception from an error response.

    orloj-ray answers ``{"error": {"code", "message", "field"?}}``; upstream answers plain
    text. Either way the class follows the HTTP status (OrlojError for unmapped ones).
    """
    cls = _ERRORS_BY_STATUS.get(status, OrlojError)
    message, code, fld = body.strip() or f"HTTP {status}", None, None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        err = parsed["error"]
        message = str(err.get("message") or message)
        code = err.get("code") or None
        fld = err.get("field") or None
    elif isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        message = parsed["error"]
    if status == 401:  # the API runs in token mode (serve.auth)
        message += " (give a token: orloj --api-token, $ORLOJ_API_TOKEN, or Client(token=...))"
    exc = cls(message, field=fld, code=code)
    if cls is OrlojError:
        exc.status = status
    return exc


# --------------------------------------------------------------------------- apply planning


@dataclass
class PlannedObject:
    """One object ``apply`` will POST, in order."""

    doc: dict
    """The normalized JSON body."""
    source: str
    index: int
    generated_from: str | None = None
    """``agent/<name>`` for objects made by ``expand_agent``."""

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.doc.get("metadata") or {}).get("namespace") or "default")

    @property
    def ref(self) -> str:
        """``<kind lower>/<name>``, as apply prints it."""
        return f"{self.kind.lower()}/{self.name}"


@dataclass
class ApplyPlan:
    objects: list[PlannedObject] = field(default_factory=list)
    skipped: list[PlannedObject] = field(default_factory=list)
    """Runnable tasks left out of a directory apply without ``run=True``."""


def manifest_files(path: str | os.PathLike) -> list[Path]:
    """A file itself, or every ``.yaml``/``.yml``/``.json`` under a directory (recursive,
    hidden files and directories skipped, in path order), as ``resources.load_path`` reads them."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise InvalidResource(f"{p}: no such file or directory", field="path")
    files = []
    for folder, dirs, names in os.walk(p):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files.extend(Path(folder, n) for n in names
                     if n.lower().endswith(MANIFEST_SUFFIXES) and not n.startswith("."))
    return sorted(files)


def plan_apply(paths_or_docs: Any, *, run: bool = False, namespace: str | None = None) -> ApplyPlan:
    """Load, normalize and expand everything first; raise ``ManifestErrors`` listing every
    bad document of every file (nothing is sent when anything is invalid).

    ``paths_or_docs``: a path, a list of paths, a manifest dict or a list of dicts. Runnable
    Tasks found by walking a directory are skipped unless ``run``; files and dicts given
    directly are always applied. ``namespace`` overwrites ``metadata.namespace``. Objects are
    ordered so that referenced kinds come first (Secrets, ModelEndpoints, Tools, ... Agents,
    AgentSystems, then Tasks), in path order within a kind.
    """
    from orloj_ray.resources import ManifestError, ManifestErrors, expand_agent

    plan, errors = ApplyPlan(), []
    for source, is_dir, docs in _sources(paths_or_docs, errors):
        for index, doc in docs:
            if namespace:
                doc.setdefault("metadata", {})["namespace"] = namespace
            item = PlannedObject(doc=doc, source=source, index=index)
            if is_dir and not run and item.kind.lower() == "task" and _task_mode(doc) != "template":
                plan.skipped.append(item)
                continue
            plan.objects.append(item)
            if item.kind.lower() == "agent":
                try:
                    extra = expand_agent(doc)
                except ManifestError as exc:
                    errors.append(exc)
                    continue
                for gen in extra or []:
                    if gen is doc or (gen.get("kind") == doc.get("kind") and _name(gen) == item.name):
                        continue
                    if namespace:
                        gen.setdefault("metadata", {})["namespace"] = namespace
                    plan.objects.append(PlannedObject(doc=gen, source=source, index=index,
                                                      generated_from=item.ref))
    if errors:
        raise ManifestErrors(errors)
    plan.objects.sort(key=lambda item: _APPLY_RANK.get(item.kind.lower(), len(_APPLY_RANK)))
    return plan


# Referenced kinds go first (stable within a kind: path order), so a runnable Task is only
# created once the system, agents and model it needs exist.
_APPLY_RANK = {k.lower(): i for i, k in enumerate((
    "Secret", "ModelEndpoint", "McpServer", "Tool", "Memory", "AgentRole", "ToolPermission", "AgentPolicy",
    "Agent", "AgentSystem", "Worker", "Task", "TaskSchedule", "TaskWebhook", "ToolApproval"))}


def _sources(paths_or_docs: Any, errors: list) -> Iterator[tuple[str, bool, list[tuple[int, dict]]]]:
    """Yield ``(source, is_dir, [(index, normalized doc)])`` per file or dict batch, collecting
    manifest errors into ``errors`` instead of stopping at the first bad file."""
    from orloj_ray.resources import ManifestError, ManifestErrors, load_path, normalize

    items = paths_or_docs if isinstance(paths_or_docs, (list, tuple)) else [paths_or_docs]
    docs = []
    for i, d in enumerate(items):
        if isinstance(d, dict):
            try:
                docs.append((i, normalize(_copy(d), source="<input>", index=i)))
            except ManifestError as exc:
                errors.append(exc)
    if docs:
        yield "<input>", False, docs
    for item in items:
        if isinstance(item, dict):
            continue
        root = Path(item)
        if not root.exists():
            errors.append(ManifestError("no such file or directory", source=str(root)))
            continue
        for f in manifest_files(root):
            try:
                loaded = load_path(f)
            except ManifestErrors as exc:
                errors.extend(exc.errors)
                continue
            except ManifestError as exc:
                errors.append(exc)
                continue
            yield str(f), root.is_dir(), [(m.index, _copy(m.doc)) for m in loaded]


def _copy(doc: dict) -> dict:
    return json.loads(json.dumps(doc))


def _name(doc: dict) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def _task_mode(doc: dict) -> str:
    return str((doc.get("spec") or {}).get("mode") or "run").strip().lower()


def strip_server_fields(doc: dict) -> dict:
    """The object without ``status`` and server-owned metadata, for dry-run comparisons."""
    out = _copy(doc)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in ("resourceVersion", "generation", "createdAt"):
        meta.pop(key, None)
    return out


# --------------------------------------------------------------------------- SSE


def iter_sse(lines: Iterable[str], until: float | None = None) -> Iterator[tuple[str, str]]:
    """``(event, data)`` per Server-Sent Event; comments (``: keep-alive``) are skipped.
    Stops quietly once ``time.monotonic()`` passes ``until``."""
    event, data = "", []
    for line in lines:
        if until is not None and time.monotonic() >= until:
            return
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if key == "event":
            event = value
        elif key == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


class _StreamUnsupported(Exception):
    """The server has no such stream (404/405/501): fall back to polling."""


# --------------------------------------------------------------------------- client


class Client:
    """Synchronous client for one orloj-ray (or upstream Orloj) server.

    ``server``: base URL; default ``$ORLOJCTL_SERVER``, ``$ORLOJ_SERVER``, else
    ``http://127.0.0.1:8080``. ``token``: bearer token; default ``$ORLOJCTL_API_TOKEN`` or
    ``$ORLOJ_API_TOKEN``. ``timeout``: seconds per request (streams excepted).
    ``transport``: an ``httpx`` transport, for tests.
    """

    def __init__(self, server: str | None = None, *, token: str | None = None, timeout: float = 30,
                 transport: httpx.BaseTransport | None = None):
        self.server = (server or default_server()).rstrip("/")
        if "://" not in self.server:
            self.server = "http://" + self.server
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "orloj-ray-client"}
        tok = token if token is not None else default_token()
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.server!r})"

    # ---------------------------------------------------------------- transport

    def _unreachable(self, exc: Exception) -> Unavailable:
        return Unavailable(f"cannot reach orloj-ray at {self.server}: is it running? "
                           f"start it with `orloj up`")

    def request(self, method: str, path: str, *, params: dict | None = None, json_body: Any = None,
                allow_404: bool = False) -> Any:
        """One call; returns the decoded JSON body (None when empty). Raises mapped errors."""
        params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            resp = self._http.request(method, path, params=params or None, json=json_body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise Unavailable(f"{method} {self.server}{path} timed out after {self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"{method} {self.server}{path} failed: {exc}") from exc
        if resp.status_code == 404 and allow_404:
            return None
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, resp.text)
        if not resp.content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def _stream(self, path: str, params: dict, read_timeout: float,
                until: float | None = None) -> Iterator[tuple[str, str]]:
        """SSE frames from one connection. Ends when the server closes the stream or at
        ``until`` (monotonic); a silent connection raises ``httpx.ReadTimeout``."""
        params = {k: v for k, v in params.items() if v not in (None, "")}
        if until is not None:
            read_timeout = max(0.05, min(read_timeout, until - time.monotonic()))
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout,
                                   headers={"Accept": "text/event-stream"}) as resp:
                if resp.status_code in (404, 405, 501):
                    raise _StreamUnsupported(path)
                if resp.status_code >= 400:
                    resp.read()
                    raise error_from_response(resp.status_code, resp.text)
                yield from iter_sse(resp.iter_lines(), until)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.RemoteProtocolError:
            return  # server closed the stream mid-event: treat as a normal end

    # ---------------------------------------------------------------- CRUD

    @staticmethod
    def kind(kind: str | KindInfo) -> KindInfo:
        return kind if isinstance(kind, KindInfo) else kind_info(kind)

    def get(self, kind: str, name: str, namespace: str = "default") -> dict:
        info = self.kind(kind)
        return self.request("GET", f"/v1/{info.plural}/{name}", params={"namespace": namespace})

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        """Every object of a kind (all namespaces when ``namespace`` is None), following pages."""
        info = self.kind(kind)
        items: list[dict] = []
        after = None
        while True:
            body = self.request("GET", f"/v1/{info.plural}", params={
                "namespace": namespace, "labelSelector": label_selector, "after": after}) or {}
            page = body.get("items") or []
            items.extend(page)
            nxt = body.get("continue")
            if not nxt or not page or nxt == after:
                return items
            after = nxt

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        info = self.kind(kind)
        self.request("DELETE", f"/v1/{info.plural}/{name}", params={"namespace": namespace})

    def create(self, doc: dict) -> dict:
        """POST one normalized object (create or update) to its collection; returns it stored."""
        info = self.kind(str(doc.get("kind", "")))
        return self.request("POST", f"/v1/{info.plural}", json_body=doc)

    def apply(self, path_or_docs: Any, *, run: bool = False, namespace: str | None = None) -> list[dict]:
        """Validate everything locally (``ManifestErrors`` lists every bad document and nothing
        is sent), then POST each object, generated ones included. Returns the stored objects.
        See ``plan_apply`` for ``run`` and ``namespace``."""
        plan = plan_apply(path_or_docs, run=run, namespace=namespace)
        return [self.create(item.doc) for item in plan.objects]

    def export(self, namespace: str | None = None) -> list[dict]:
        """Every object of every kind (all namespaces when ``namespace`` is None), in dependency
        order, as a backup holds them: Secrets masked, mirrored Workers left out (``orloj_ray.backup``)."""
        from orloj_ray.backup import EXPORT_ORDER, for_export

        docs = (for_export(obj) for kind in EXPORT_ORDER for obj in self.list(kind, namespace))
        return [doc for doc in docs if doc is not None]

    def import_objects(self, docs: Iterable[dict], *,
                       on_result: Callable[[str, dict, str], None] | None = None):
        """Restore an export (``orloj_ray.backup`` states the rules); returns an ``ImportReport``.
        ``on_result(action, doc, detail)`` is called per object: created, updated, unchanged,
        recreate-secret or failed. A refused object does not stop the others."""
        from orloj_ray import backup

        report = backup.ImportReport()
        for doc in backup.ordered(docs):
            info, ref = self.kind(str(doc.get("kind", ""))), backup.ref(doc)
            meta = doc.get("metadata") or {}
            live = self.request("GET", f"/v1/{info.plural}/{meta.get('name')}",
                                params={"namespace": meta.get("namespace") or "default"}, allow_404=True)
            if live is not None and (info.kind in backup.RECORD_KINDS or backup.is_masked_secret(doc)):
                action, detail = "unchanged", "exists; left as it is"
            elif backup.is_masked_secret(doc):
                action, detail = "recreate-secret", "values are masked in the export: re-create it with orloj create secret"
            else:
                try:
                    self.create(backup.for_import(doc))
                    action, detail = ("created", "") if live is None else ("updated", "")
                except OrlojError as exc:
                    if isinstance(exc, Unavailable):
                        raise
                    action, detail = "failed", exc.message
            {"created": report.created, "updated": report.updated, "unchanged": report.unchanged,
             "recreate-secret": report.secrets_to_recreate}.get(action, []).append(ref)
            if action == "failed":
                report.failed.append((ref, detail))
            if on_result:
                on_result(action, doc, detail)
        return report

    def create_secret(self, name: str, data: dict[str, str], *, namespace: str = "default") -> dict:
        from orloj_ray.resources import normalize

        doc = normalize({"apiVersion": "orloj.dev/v1", "kind": "Secret",
                         "metadata": {"name": name, "namespace": namespace},
                         "spec": {"stringData": {k: str(v) for k, v in data.items()}}})
        return self.create(doc)

    # ---------------------------------------------------------------- tasks

    def create_task(self, system: str, input: dict | None = None, *, name: str | None = None,
                    namespace: str = "default") -> dict:
        """Create a runnable Task (name ``run-<system>-<unix ms>`` unless given); returns it."""
        name = name or f"run-{system}-{int(time.time() * 1000)}"
        doc = {"apiVersion": "orloj.dev/v1", "kind": "Task",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"system": system, "input": {str(k): _as_str(v) for k, v in (input or {}).items()}}}
        return self.request("POST", "/v1/tasks", params={"namespace": namespace}, json_body=doc)

    def run_task(self, system: str, input: dict | None = None, *, namespace: str = "default",
                 name: str | None = None, timeout: float = 300,
                 on_update: Callable[[dict], None] | None = None) -> dict:
        """Create a task and wait until it is terminal; returns the finished task (whatever its
        phase: check ``status.phase``). Raises ``WaitTimeout`` after ``timeout`` seconds."""
        task = self.create_task(system, input, name=name, namespace=namespace)
        if on_update:
            on_update(task)
        return self.wait("task", task["metadata"]["name"], namespace=namespace, timeout=timeout,
                         on_update=on_update)

    def logs(self, kind: str, name: str, namespace: str = "default") -> list[str]:
        info = self.kind(kind)
        body = self.request("GET", f"/v1/{info.plural}/{name}/logs", params={"namespace": namespace}) or {}
        return list(body.get("logs") or [])

    _MESSAGE_FILTERS = frozenset({"phase", "lifecycle", "from_agent", "to_agent", "branch_id", "trace_id", "limit"})

    def _message_params(self, namespace: str, filters: dict) -> dict:
        unknown = set(filters) - self._MESSAGE_FILTERS
        if unknown:
            raise TypeError(f"unknown message filter(s): {', '.join(sorted(unknown))}; expected "
                            f"{', '.join(sorted(self._MESSAGE_FILTERS))}")
        params: dict[str, Any] = {"namespace": namespace}
        for key, value in filters.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                value = ",".join(str(v) for v in value)
            params[key] = str(value)
        return params

    def messages(self, name: str, namespace: str = "default", **filters: Any) -> dict:
        """``GET /v1/tasks/<name>/messages``: ``{"name", "namespace", "total", "filtered_from",
        "lifecycle_counts", "messages"}``.

        Filters: ``phase`` (a lifecycle name or a list/comma string of them: queued, running,
        retrypending, succeeded, deadletter; alias ``lifecycle``), ``from_agent``, ``to_agent``,
        ``branch_id``, ``trace_id``, ``limit`` (keep the last N)."""
        return self.request("GET", f"/v1/tasks/{name}/messages",
                            params=self._message_params(namespace, filters)) or {}

    def metrics(self, name: str, namespace: str = "default", **filters: Any) -> dict:
        """``GET /v1/tasks/<name>/metrics``: ``{"name", "namespace", "generated_at", "totals",
        "per_agent", "per_edge", "filters"}``; the same filters as ``messages``."""
        return self.request("GET", f"/v1/tasks/{name}/metrics",
                            params=self._message_params(namespace, filters)) or {}

    def cancel_task(self, name: str, namespace: str = "default", reason: str | None = None,
                    *, retries: int = 4) -> dict:
        """Mark a non-terminal task Failed (as ``orlojctl cancel task``); returns the updated task.

        Writes the whole status back through ``PUT /v1/tasks/<name>/status`` with the current
        resourceVersion: phase ``Failed``, ``lastError`` = ``reason`` or ``task canceled via
        orloj``, ``completedAt`` now, lease and assignment fields cleared, ``observedGeneration``
        = ``metadata.generation``. On a 409 the task is read again and the change re-applied, up
        to ``retries`` more times. A task already terminal raises ``Conflict`` with code
        ``already_terminal`` (nothing is written). Running agents are not interrupted: the
        engine notices the terminal phase on its next status write.
        """
        from orloj_ray.store.util import now_rfc3339_nano

        message = (reason or "").strip() or "task canceled via orloj"
        attempt = 0
        while True:
            task = self.get("task", name, namespace)
            meta, status = task.get("metadata") or {}, dict(task.get("status") or {})
            phase = str(status.get("phase") or "")
            if phase.lower() in {p.lower() for p in TERMINAL_TASK_PHASES}:
                raise Conflict(f"task/{name} is already terminal ({phase})", code="already_terminal")
            status.update(phase="Failed", lastError=message, completedAt=now_rfc3339_nano())
            for key in ("nextAttemptAt", "assignedWorker", "claimedBy", "leaseUntil", "lastHeartbeat"):
                status.pop(key, None)
            if meta.get("generation"):
                status["observedGeneration"] = meta["generation"]
            body = {"metadata": {"resourceVersion": str(meta.get("resourceVersion", ""))}, "status": status}
            try:
                env = self.request("PUT", f"/v1/tasks/{name}/status", params={"namespace": namespace},
                                   json_body=body) or {}
            except Conflict:
                if attempt >= retries:
                    raise
                attempt += 1
                time.sleep(0.05 * attempt)
                continue
            return {**task, "metadata": env.get("metadata") or meta, "status": env.get("status") or status}

    def retry_task(self, name: str, namespace: str = "default", overrides: dict | None = None) -> dict:
        """Run a finished task again as a new Task ``<name>-retry-<unix ms>`` (as ``orlojctl retry
        task``): same spec, ``spec.input`` updated with ``overrides``. Returns the created task.

        A task that is Pending (or has no phase yet), Running or WaitingApproval raises
        ``Conflict`` with code ``not_retryable``."""
        task = self.get("task", name, namespace)
        phase = str((task.get("status") or {}).get("phase") or "")
        if phase.lower() in ("", "pending", "running", "waitingapproval"):
            raise Conflict(f"task/{name} is not retryable while phase={phase or 'Pending'}",
                           code="not_retryable")
        spec = json.loads(json.dumps(task.get("spec") or {}))
        inputs = spec.get("input") if isinstance(spec.get("input"), dict) else {}
        for key, value in (overrides or {}).items():
            if not str(key).strip():
                raise InvalidResource(f"invalid override {key!r}={value!r}: the key is empty", field="spec.input")
            inputs[str(key).strip()] = _as_str(value)
        spec["input"] = inputs
        ns = str((task.get("metadata") or {}).get("namespace") or "").strip() or namespace or "default"
        doc = {"apiVersion": "orloj.dev/v1", "kind": "Task",
               "metadata": {"name": f"{name}-retry-{int(time.time() * 1000)}", "namespace": ns},
               "spec": spec}
        return self.request("POST", "/v1/tasks", params={"namespace": ns}, json_body=doc)

    def wait(self, kind: str, name: str, *, namespace: str = "default",
             for_phases: Iterable[str] | Callable[[dict], bool] = TERMINAL_TASK_PHASES,
             timeout: float = 300, on_update: Callable[[dict], None] | None = None,
             poll_interval: float = 1.0) -> dict:
        """Block until the object's ``status.phase`` is one of ``for_phases`` (case-insensitive;
        or a predicate on the object) and return it.

        Follows the SSE watch (``/v1/<c>/watch?name=``) for watchable kinds, reconnecting when
        the stream ends, and polls GET otherwise or when the server has no watch route.
        ``on_update`` gets every new version seen. Raises NotFound if the object is missing
        or deleted, ``WaitTimeout`` after ``timeout`` seconds.
        """
        info = self.kind(kind)
        done = _phase_predicate(for_phases)
        deadline = time.monotonic() + timeout
        obj = self.get(info.kind, name, namespace)
        if on_update:
            on_update(obj)
        use_watch = info.watchable
        while not done(obj):
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"timed out after {_fmt_s(timeout)} waiting for {info.lower}/{name} "
                                  f"(phase: {_phase(obj) or 'unknown'})", resource=obj)
            if use_watch:
                opened = time.monotonic()
                try:
                    for etype, res in self._watch_once(info, namespace, name, 20.0, deadline):
                        if etype == "deleted":
                            raise NotFound(f"{info.lower} {name!r} was deleted while waiting")
                        if _name(res).lower() != name.lower() or _rv(res) == _rv(obj):
                            continue
                        obj = res
                        if on_update:
                            on_update(obj)
                        if done(obj):
                            return obj
                except _StreamUnsupported:
                    use_watch = False
                except httpx.TimeoutException:
                    pass
                except httpx.TransportError:
                    pass
                if time.monotonic() - opened < 0.5:  # stream refused or closed at once: do not spin
                    time.sleep(min(poll_interval, max(deadline - time.monotonic(), 0)))
                continue
            time.sleep(min(poll_interval, max(deadline - time.monotonic(), 0)))
            fresh = self.get(info.kind, name, namespace)
            if fresh != obj:
                obj = fresh
                if on_update:
                    on_update(obj)
        return obj

    # ---------------------------------------------------------------- streams

    def _watch_once(self, info: KindInfo, namespace, name, read_timeout: float, until: float | None = None):
        for _event, data in self._stream(f"/v1/{info.plural}/watch", {"namespace": namespace, "name": name},
                                         read_timeout, until):
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if isinstance(msg, dict) and "resource" in msg:
                yield str(msg.get("type", "")), msg.get("resource") or {}

    def watch(self, kind: str, namespace: str | None = None, name: str | None = None, *,
              reconnect: bool = True, timeout: float | None = None) -> Iterator[tuple[str, dict]]:
        """``(type, resource)`` for each change (``added``/``updated``/``deleted``) of a
        watchable kind (agents, tasks, task-schedules, task-webhooks), starting with a
        snapshot. Reconnects when the server ends the stream (without repeating versions
        already seen) unless ``reconnect=False``; stops after ``timeout`` seconds if given."""
        info = self.kind(kind)
        if not info.watchable:
            raise InvalidResource(f"{info.plural} cannot be watched: watchable kinds are agents, "
                                  f"tasks, task-schedules, task-webhooks", field="kind")
        until = time.monotonic() + timeout if timeout is not None else None
        seen: dict[tuple[str, str], str] = {}
        while until is None or time.monotonic() < until:
            try:
                for etype, res in self._watch_once(info, namespace, name, 60.0, until):
                    key = ((res.get("metadata") or {}).get("namespace", ""), _name(res))
                    if etype == "deleted":
                        seen.pop(key, None)
                    elif seen.get(key) == _rv(res):
                        continue
                    else:
                        seen[key] = _rv(res)
                    yield etype, res
            except _StreamUnsupported as exc:
                raise NotFound(f"server has no watch stream for {info.plural}") from exc
            except httpx.ReadTimeout:
                pass
            if not reconnect:
                return

    def events(self, since: int | None = None, *, reconnect: bool = True, timeout: float | None = None,
               **filters: str | None) -> Iterator[dict]:
        """Control-plane events (``/v1/events/watch``), replaying those after ``since``.
        Filters: ``source``, ``type``, ``kind``, ``name``, ``namespace`` (exact, any case).
        Reconnects from the last id when the stream ends unless ``reconnect=False``; stops
        after ``timeout`` seconds if given."""
        unknown = set(filters) - {"source", "type", "kind", "name", "namespace"}
        if unknown:
            raise TypeError(f"unknown event filter(s): {', '.join(sorted(unknown))}")
        until = time.monotonic() + timeout if timeout is not None else None
        last = since
        while until is None or time.monotonic() < until:
            try:
                for _event, data in self._stream("/v1/events/watch", {"since": last, **filters}, 60.0, until):
                    try:
                        ev = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(ev, dict) and isinstance(ev.get("id"), int):
                        last = ev["id"]
                    yield ev
            except _StreamUnsupported as exc:
                raise NotFound("server has no event stream (/v1/events/watch)") from exc
            except httpx.ReadTimeout:
                pass
            if not reconnect:
                return

    # ---------------------------------------------------------------- misc

    def health(self) -> dict:
        return self.request("GET", "/healthz") or {}

    def runtime(self) -> dict:
        """``GET /v1/runtime``: ``{"ray": {"address", "dashboard_url", "nodes"}, "store", "log", "mode"}``."""
        return self.request("GET", "/v1/runtime") or {}

    def audit(self, namespace: str | None = None, *, task: str | None = None, agent: str | None = None,
              decision: str | None = None, code: str | None = None, subject: str | None = None,
              after: int | None = None, limit: int | None = None) -> dict:
        """``GET /v1/audit``: governance decisions, oldest first, ``{"items", "continue"?}``.
        ``namespace`` None: all namespaces. Filters match exactly; ``after`` is a record id."""
        params = {k: v for k, v in (("namespace", namespace), ("task", task), ("agent", agent),
                                    ("decision", decision), ("code", code), ("subject", subject),
                                    ("after", after), ("limit", limit)) if v not in (None, "")}
        return self.request("GET", "/v1/audit", params=params) or {"items": []}

    def approve(self, name: str, *, namespace: str = "default", decided_by: str | None = None,
                reason: str | None = None) -> dict:
        return self._decide(name, "approve", namespace, decided_by, reason)

    def deny(self, name: str, *, namespace: str = "default", decided_by: str | None = None,
             reason: str | None = None) -> dict:
        return self._decide(name, "deny", namespace, decided_by, reason)

    def _decide(self, name, verb, namespace, decided_by, reason) -> dict:
        body = {k: v for k, v in (("decided_by", decided_by), ("reason", reason)) if v} or None
        return self.request("POST", f"/v1/tool-approvals/{name}/{verb}", params={"namespace": namespace},
                            json_body=body)


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _rv(obj: dict | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))


def _phase(obj: dict | None) -> str:
    return str(((obj or {}).get("status") or {}).get("phase") or "")


def _phase_predicate(for_phases) -> Callable[[dict], bool]:
    if callable(for_phases):
        return for_phases
    wanted = {p.lower() for p in ([for_phases] if isinstance(for_phases, str) else for_phases)}
    return lambda obj: _phase(obj).lower() in wanted


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g}s"
