"""The orloj-ray exception tree.

Every error a user can see carries a stable ``code`` (shown identically in traces, history,
task status, the API and the CLI), an HTTP ``status`` for the REST layer, an optional
``field`` path naming what was wrong, and whether a retry may help.

    OrlojError                      orloj.error        500
    ├── InvalidResource             invalid            400  bad manifest / request body
    ├── Forbidden                   forbidden          403  outside the caller's namespaces
    ├── NotFound                    not_found          404
    ├── Conflict                    conflict           409  stale resourceVersion, exists
    ├── TooLarge                    too_large          413
    ├── Unavailable                 unavailable        503  retryable
    └── ToolError                   execution_failed   502  a tool call failed; its code says how
                                                            (upstream's tool_reason: TOOL_REASONS)
"""

from __future__ import annotations


class OrlojError(Exception):
    code = "orloj.error"
    status = 500
    retryable = False

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.field:
            err["field"] = self.field
        return {"error": err}

    def __reduce__(self):  # keep code/field when crossing Ray process boundaries
        return (_rebuild, (type(self), self.message, self.field, self.code))


def _rebuild(cls, message, field, code):
    return cls(message, field=field, code=code)


class InvalidResource(OrlojError):
    """A bad manifest or request. ``problems`` lists every problem found (``{"field",
    "message"}``), the first of which is ``field``; ``message`` joins them with "; "."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 problems: list[dict] | None = None):
        super().__init__(message, field=field, code=code)
        self.problems = list(problems or [])

    def to_dict(self) -> dict:
        out = super().to_dict()
        if len(self.problems) > 1:
            out["error"]["details"] = [dict(p) for p in self.problems]
        return out

    def __reduce__(self):
        return (_rebuild_invalid, (type(self), self.message, self.field, self.code, self.problems))


def _rebuild_invalid(cls, message, field, code, problems):
    return cls(message, field=field, code=code, problems=problems)


class Forbidden(OrlojError):
    code = "forbidden"
    status = 403


class NotFound(OrlojError):
    code = "not_found"
    status = 404


class Conflict(OrlojError):
    code = "conflict"
    status = 409


class TooLarge(OrlojError):
    code = "too_large"
    status = 413


class Unavailable(OrlojError):
    code = "unavailable"
    status = 503
    retryable = True


TOOL_REASONS = {
    "invalid_input": "tool_invalid_input",
    "unsupported_tool": "tool_unsupported",
    "runtime_policy_invalid": "tool_runtime_policy_invalid",
    "isolation_unavailable": "tool_isolation_unavailable",
    "permission_denied": "tool_permission_denied",
    "secret_resolution_failed": "tool_secret_resolution_failed",
    "timeout": "tool_execution_timeout",
    "canceled": "tool_execution_canceled",
    "execution_failed": "tool_backend_failure",
    "auth_invalid": "tool_auth_invalid",
    "auth_forbidden": "tool_auth_forbidden",
    "tool_egress_denied": "tool_egress_denied",
    "resource_limit": "tool_resource_limit",
}
"""A tool error code -> upstream's ``tool_reason`` (execution.md 11.3): what traces and retries report."""


class ToolError(OrlojError):
    """A tool call failed; ``code`` is one of ``TOOL_REASONS`` and ``retryable`` says whether a
    retry may help (the tool runtime's own retries, then the message's)."""

    code = "execution_failed"
    status = 502

    def __init__(self, message: str, *, code: str = "execution_failed", retryable: bool = False):
        super().__init__(message, code=code)
        self.retryable = retryable

    @property
    def reason(self) -> str:
        return TOOL_REASONS.get(self.code, "tool_backend_failure")

    def __reduce__(self):
        return (_rebuild_tool_error, (self.message, self.code, self.retryable))


def _rebuild_tool_error(message, code, retryable):
    return ToolError(message, code=code, retryable=retryable)
