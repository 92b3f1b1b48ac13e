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
    └── Unavailable                 unavailable        503  retryable
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
    code = "invalid"
    status = 400


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
