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
    ├── TaskFailed        run_task(): the task ended Failed/DeadLetter (``.task`` is it)
    └── WaitTimeout       wait()/run_task() ran out of time (also a TimeoutError)

Results are the server's JSON objects, typed for checkers as ``TypedDict``s (``Resource``,
``Task``, ``TraceRow``...: ``orloj_ray.client._types``); the package ships ``py.typed``.

``Client`` is assembled from one class per concern, each in a private module:
``_transport`` (``Session``: the httpx session, bearer token, error mapping, SSE),
``_resources`` (CRUD, apply), ``_plan`` (local apply planning), ``_watch`` (watch, events),
``_tasks`` (create/run/wait/cancel/retry, messages, metrics), ``_backup`` (export/import)
and ``_governance`` (audit, approvals).
"""

from __future__ import annotations

from typing import Any

from orloj_ray.client import _backup, _governance, _tasks
from orloj_ray.client._plan import (
    MANIFEST_SUFFIXES,
    ApplyPlan,
    PlannedObject,
    manifest_files,
    plan_apply,
    strip_server_fields,
)
from orloj_ray.client._refs import References
from orloj_ray.client._tasks import TERMINAL_TASK_PHASES, TaskFailed, WaitTimeout, rerun_name
from orloj_ray.client._types import MemoryEntries, Metadata, Resource, Task, TaskStatus, TraceRow
from orloj_ray.client._transport import (
    DEFAULT_SERVER,
    default_server,
    default_token,
    error_from_response,
    iter_sse,
)


class Client(_tasks.TaskAPI, _backup.BackupAPI, _governance.GovernanceAPI):
    """Synchronous client for one orloj-ray (or upstream Orloj) server.

    ``server``: base URL; default ``$ORLOJCTL_SERVER``, ``$ORLOJ_SERVER``, else
    ``http://127.0.0.1:8080``. ``token``: bearer token; default ``$ORLOJCTL_API_TOKEN`` or
    ``$ORLOJ_API_TOKEN``. ``timeout``: seconds per request (streams excepted).
    ``transport``: an ``httpx`` transport, for tests.
    """

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/healthz") or {}

    def runtime(self) -> dict[str, Any]:
        """``GET /v1/runtime``: ``{"ray": {"address", "dashboard_url", "nodes"}, "store", "log", "mode"}``."""
        return self.request("GET", "/v1/runtime") or {}
