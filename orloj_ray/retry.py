"""Retry policies, error classification and the retry-or-dead-letter decision (execution.md §8).

Upstream Orloj retries at three levels, each with its own policy and schedule:

=========  ==============================================  ============  ============  =======================
level      policy (constructor)                            exponent cap  delay cap     jitter unit, default
=========  ==============================================  ============  ============  =======================
task       Task ``spec.retry`` (``for_task``)               2^10          24 h          none upstream
message    Task ``spec.message_retry`` (``for_messages``)   2^20          max_backoff   FNV-64a, ``full``
tool       Tool ``spec.runtime.retry`` (``for_tool``)       2^10          max_backoff   FNV-32a, ``none``
=========  ==============================================  ============  ============  =======================

Everything here is a pure function of its arguments: no clock, no I/O, no random numbers. The
jitter is derived from a hash of the key and the attempt number, so a restarted supervisor
computes the schedule its predecessor computed.

``attempts`` always counts the tries made so far, the failed one included (upstream's
``status.attempts``, the message record's ``attempts``, the tool loop's ``attempt``): the first
failure is ``attempts=1``.

Whether to retry is decided by the error's type and code (``classify``), never by searching its
text, with one exception kept for upstream compatibility: ``message_retry.non_retryable``
entries also match as substrings of the error message. Governance denials and invalid
configuration (``NEVER_RETRY_CODES``) are never retried, whatever the error's own flag says.

Typical use (message level)::

    policy = RetryPolicy.for_messages(task["spec"])
    outcome = decide(policy, record["attempts"], exc, key=env.idempotency_key)
    if outcome.final:   # phase DeadLetter
        last_error = f"message {env.message_id} dead-lettered after {outcome.attempts} attempts: {outcome.error}"
    else:               # phase RetryPending
        next_attempt_at = now + timedelta(seconds=outcome.delay_s)
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from orloj_ray.errors import TOOL_REASONS, OrlojError, ToolError
from orloj_ray.resources.base import quote
from orloj_ray.resources.durations import parse_duration

Jitter = Literal["none", "full", "equal"]
Scope = Literal["task", "message", "tool"]
Phase = Literal["RetryPending", "DeadLetter", "Failed"]

JITTER_MODES: tuple[str, ...] = ("none", "full", "equal")
SCOPES: tuple[str, ...] = ("task", "message", "tool")

MESSAGE_MAX_BACKOFF_S = 24 * 3600.0
"""Upstream's default (and task level's fixed) delay cap: 24 h."""
TOOL_MAX_BACKOFF_S = 30.0
"""Upstream's default tool delay cap: 30 s."""

_NS = 1_000_000_000
_MS = 1_000_000
_EXPONENT_CAP = {"task": 10, "message": 20, "tool": 10}

GOVERNANCE_CODES: frozenset[str] = frozenset({
    "tool_permission_denied", "permission_denied", "model_not_allowed", "tool_blocked",
    "token_budget_exceeded", "approval_denied", "approval_expired", "approval_timeout",
    "agent_contract_violation",
})
"""Governance denials (governance.md): policy said no; asking again gets the same answer."""
INVALID_CODES: frozenset[str] = frozenset({
    "task_invalid", "invalid", "invalid_input", "unsupported_tool", "runtime_policy_invalid",
    "isolation_unavailable", "auth_invalid", "auth_forbidden",
    # upstream's tool reasons for the same cases, for callers that report the reason as the code
    "tool_invalid_input", "tool_unsupported", "tool_runtime_policy_invalid", "tool_isolation_unavailable",
    "tool_auth_invalid", "tool_auth_forbidden",
})
"""Invalid task, resource or tool configuration: the same call fails the same way."""
NEVER_RETRY_CODES: frozenset[str] = GOVERNANCE_CODES | INVALID_CODES
"""Error codes that are never retried, whatever the error's ``retryable`` flag says."""

_OWN_REASONS = frozenset({"tool_permission_denied", "agent_contract_violation"})
"""Governance codes that upstream reports as their own reason rather than ``policy_error``."""

# OSErrors about a path, not the network: retrying reads the same missing file.
_PERMANENT_OS_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


# --------------------------------------------------------------------------------------------
# Policy


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how fast one level retries. Validated on construction (``ValueError``
    naming the field). The bare defaults equal upstream's message-level defaults."""

    max_attempts: int = 1
    """Tries in all, the first included; 1 = never retry. ``>= 1``. Default 1."""
    backoff: float = 0.0
    """Delay before the first retry, in seconds; doubles on each further retry. 0 = retry at
    once. ``>= 0``. Default 0."""
    max_backoff: float = MESSAGE_MAX_BACKOFF_S
    """Cap on any one delay, in seconds, applied before jitter. ``> 0``. Default 24 h
    (``for_tool``: 30 s)."""
    jitter: Jitter = "full"
    """``none`` (the capped delay), ``full`` (delay × u) or ``equal`` (delay/2 + delay/2 × u),
    u ∈ [0, 1) derived from the key and the attempt number. Default ``full`` (``for_task``
    and ``for_tool``: ``none``)."""
    non_retryable: tuple[str, ...] = ()
    """Error codes (exact match) or message substrings (upstream compatibility) that are never
    retried; case-insensitive, blank entries ignored. Default none."""
    scope: Scope = "message"
    """Which upstream schedule this follows: ``message`` (exponent ≤ 20; u from FNV-64a),
    ``task`` (exponent ≤ 10; u as for messages; a non-retryable error ends in ``Failed``
    rather than ``DeadLetter``) or ``tool`` (exponent ≤ 10; u from FNV-32a). Default
    ``message``."""

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if not _is_seconds(self.backoff) or self.backoff < 0:
            raise ValueError(f"RetryPolicy.backoff must be a finite number of seconds >= 0, got {self.backoff!r}")
        if not _is_seconds(self.max_backoff) or self.max_backoff <= 0:
            raise ValueError(f"RetryPolicy.max_backoff must be a finite number of seconds > 0, "
                             f"got {self.max_backoff!r}")
        if self.jitter not in JITTER_MODES:
            raise ValueError(f"RetryPolicy.jitter must be one of none, full, equal, got {self.jitter!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"RetryPolicy.scope must be one of task, message, tool, got {self.scope!r}")
        entries = (self.non_retryable,) if isinstance(self.non_retryable, str) else self.non_retryable
        problem = f"RetryPolicy.non_retryable must be a sequence of strings, got {self.non_retryable!r}"
        try:
            entries = tuple(entries)
        except TypeError:
            raise ValueError(problem) from None
        if not all(isinstance(e, str) for e in entries):
            raise ValueError(problem)
        object.__setattr__(self, "non_retryable", tuple(e.strip() for e in entries if e.strip()))

    @classmethod
    def for_task(cls, task_spec: Mapping[str, Any]) -> RetryPolicy:
        """Task-level retries from ``spec.retry`` (a Task's spec, or the whole Task).

        ``max_attempts`` ≤ 0 → 1; ``backoff`` blank → 0 s, negative → 0. Upstream fixes the cap
        at 24 h and applies no jitter at this level.
        """
        retry = _section(_spec(task_spec), "retry")
        return cls(
            max_attempts=_attempts(retry, "spec.retry.max_attempts") or 1,
            backoff=_duration(retry, "backoff", "spec.retry.backoff"),
            max_backoff=MESSAGE_MAX_BACKOFF_S,
            jitter="none",
            scope="task",
        )

    @classmethod
    def for_messages(cls, task_spec: Mapping[str, Any]) -> RetryPolicy:
        """Message-level retries from ``spec.message_retry``, falling back to ``spec.retry``.

        ``max_attempts`` ≤ 0 → ``retry.max_attempts`` → 1; ``backoff`` blank →
        ``retry.backoff`` → 0 s; ``max_backoff`` blank or ≤ 0 → 24 h; ``jitter`` blank →
        ``full``; ``non_retryable`` as given.
        """
        spec = _spec(task_spec)
        retry, message = _section(spec, "retry"), _section(spec, "message_retry")
        backoff_field = "spec.message_retry.backoff"
        if not str(message.get("backoff") or "").strip():
            message, backoff_field = {**message, "backoff": retry.get("backoff")}, "spec.retry.backoff"
        return cls(
            max_attempts=(_attempts(message, "spec.message_retry.max_attempts")
                          or _attempts(retry, "spec.retry.max_attempts") or 1),
            backoff=_duration(message, "backoff", backoff_field),
            max_backoff=_duration(message, "max_backoff", "spec.message_retry.max_backoff") or MESSAGE_MAX_BACKOFF_S,
            jitter=_jitter(message, "spec.message_retry.jitter", "full"),
            non_retryable=_strings(message.get("non_retryable"), "spec.message_retry.non_retryable"),
            scope="message",
        )

    @classmethod
    def for_tool(cls, tool_spec: Mapping[str, Any]) -> RetryPolicy:
        """Tool-level retries from ``spec.runtime.retry`` (a Tool's spec, or the whole Tool).

        ``max_attempts`` ≤ 0 → 1; ``backoff`` blank → 0 s; ``max_backoff`` blank or ≤ 0 →
        30 s; ``jitter`` blank → ``none``.
        """
        retry = _section(_section(_spec(tool_spec), "runtime"), "retry")
        return cls(
            max_attempts=_attempts(retry, "spec.runtime.retry.max_attempts") or 1,
            backoff=_duration(retry, "backoff", "spec.runtime.retry.backoff"),
            max_backoff=_duration(retry, "max_backoff", "spec.runtime.retry.max_backoff") or TOOL_MAX_BACKOFF_S,
            jitter=_jitter(retry, "spec.runtime.retry.jitter", "none"),
            scope="tool",
        )


def _is_seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _spec(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept a spec or the whole resource (a spec never has a ``spec`` key)."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"expected a spec mapping, got {type(doc).__name__}")
    inner = doc.get("spec")
    return inner if isinstance(inner, Mapping) else doc


def _section(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, Mapping) else {}


def _attempts(section: Mapping[str, Any], field: str) -> int:
    """The configured count, or 0 when unset or ≤ 0 (the caller applies the fallback)."""
    value = section.get("max_attempts")
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid {field} {value!r}: expected an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid {field} {value!r}: expected an integer") from None
    if number != value and not isinstance(value, str):
        raise ValueError(f"invalid {field} {value!r}: expected an integer")
    return max(number, 0)


def _duration(section: Mapping[str, Any], key: str, field: str) -> float:
    """Seconds; blank → 0; negative → 0 (upstream treats a non-positive duration as unset)."""
    text = str(section.get(key) or "").strip()
    if not text:
        return 0.0
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ValueError(f"invalid {field} {quote(text)}: {exc}") from None
    return max(seconds, 0.0)


def _jitter(section: Mapping[str, Any], field: str, default: str) -> str:
    value = str(section.get("jitter") or "").strip().lower() or default
    if value not in JITTER_MODES:
        raise ValueError(f"invalid {field} {quote(value)}: expected none, full, or equal")
    return value


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"invalid {field}: expected a list of strings")
    return tuple(value)


# --------------------------------------------------------------------------------------------
# Schedule


def _fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def jitter_unit(policy: RetryPolicy, attempts: int, key: str) -> float:
    """Upstream's deterministic u ∈ [0, 1) for this key and attempt.

    ``message``/``task``: FNV-64a of ``lower(strip(key)) + "|<attempts>"``, mod 10^6, / 10^6
    (``messageRetryJitterUnit``; the key is the message's idempotency key, the caller applying
    upstream's fallbacks: message id, then ``task|from|to``). ``tool``: FNV-32a of
    ``strip(key) + ":<attempts>"``, mod 10^4, / 10^4 (``jitterFraction``; the key is the tool name).
    """
    if policy.scope == "tool":
        return (_fnv32a(f"{key.strip()}:{attempts}".encode()) % 10_000) / 10_000
    return (_fnv64a(f"{key.strip().lower()}|{attempts}".encode()) % 1_000_000) / 1_000_000


def _check_attempts(attempts: object) -> None:
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts counts the tries made so far, the failed one included: "
                         f"expected an int >= 1, got {attempts!r}")


def delay_ns(policy: RetryPolicy, attempts: int, key: str = "") -> int:
    """``delay`` in integer nanoseconds, computed as upstream's ``time.Duration`` arithmetic."""
    _check_attempts(attempts)
    base = round(policy.backoff * _NS)
    if base <= 0:
        return 0
    cap = round(policy.max_backoff * _NS)
    exponent = min(attempts - 1, _EXPONENT_CAP[policy.scope])
    capped = min(base << exponent, cap)
    if policy.jitter == "none":
        return capped
    u = jitter_unit(policy, attempts, key)
    if policy.scope == "tool":  # applyDeterministicJitter: floor + int(span * f)
        floor = int(capped * (0.5 if policy.jitter == "equal" else 0.0))
        span = capped - floor
        out = floor + int(span * u) if span > 0 else floor
    elif policy.jitter == "full":  # computeMessageRetryDelay
        out = int(capped * u)
    else:
        half = capped / 2
        out = int(half + half * u)
    return out if out > 0 else _MS


def delay(policy: RetryPolicy, attempts: int, key: str = "") -> float:
    """Seconds to wait before try ``attempts + 1``, after ``attempts`` tries have failed.

    ``min(backoff × 2^(attempts−1), max_backoff)`` with the exponent capped at 20 (messages) or
    10 (tasks, tools), then jitter: ``none`` → d; ``full`` → d × u; ``equal`` → d/2 + d/2 × u,
    with u from ``jitter_unit(policy, attempts, key)``. Arithmetic is upstream's, in integer
    nanoseconds (products truncated), so the schedule matches upstream's to the nanosecond. A
    jittered delay that truncates to 0 becomes 1 ms; ``backoff`` 0 → 0. Unlike upstream's
    message level, jitter also applies once the cap is reached (docs/compatibility.md).
    ``attempts`` < 1 → ``ValueError``.
    """
    return delay_ns(policy, attempts, key) / _NS


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``250ms``, ``1.5s``, ``2m30s``, ``24h0m0s``.

    Upstream's texts print delays this way (``retry scheduled in 2s``, ``delay=500ms``)."""
    ns = round(seconds * _NS)
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(value: int, prec: int) -> tuple[int, str]:
        whole, rest = divmod(value, 10**prec)
        digits = f"{rest:0{prec}d}".rstrip("0")
        return whole, ("." + digits if digits else "")

    if u < 1_000:
        return f"{sign}{u}ns"
    if u < _MS:
        whole, tail = frac(u, 3)
        return f"{sign}{whole}{tail}µs"
    if u < _NS:
        whole, tail = frac(u, 6)
        return f"{sign}{whole}{tail}ms"
    whole, tail = frac(u, 9)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}{tail}s"
    if minutes:
        return f"{sign}{minutes}m{secs}{tail}s"
    return f"{sign}{secs}{tail}s"


# --------------------------------------------------------------------------------------------
# Classification


@runtime_checkable
class FailedTurn(Protocol):
    """What ``classify`` reads from a turn result (``engine.turn.TurnResult``)."""

    error_code: str
    retryable: bool


@dataclass(frozen=True)
class Classification:
    retryable: bool
    """Whether the same work may succeed if tried again."""
    code: str
    """The error's stable code (``timeout``, ``tool_permission_denied``, ...)."""
    reason: str
    """Why it was classified so, in upstream's vocabulary where it has one: a ``ToolError``'s
    tool reason (``tool_backend_failure``), ``policy_error``, ``configured_non_retryable``,
    else the code."""
    message: str = ""
    """The error's text, for ``last_error`` and traces."""


def classify(error: BaseException | FailedTurn, non_retryable: Iterable[str] = ()) -> Classification:
    """Classify an exception or a failed turn result by its type and code.

    Exceptions, first match wins:

    * ``OrlojError`` and subclasses (``ModelError``, ``ToolError``, ``Unavailable``, ...): its
      ``code`` and its ``retryable`` flag (class default ``False``; ``Unavailable`` ``True``).
    * ``TimeoutError`` (``asyncio.TimeoutError`` included) → retryable, code ``timeout``.
    * ``asyncio.CancelledError`` → not retryable, code ``canceled``.
    * ``FileNotFoundError``, ``PermissionError`` and other path errors → not retryable,
      code ``internal_error``.
    * ``ConnectionError`` and any other ``OSError`` (refused, reset, unreachable, DNS) →
      retryable, code ``transient``.
    * anything else → **not** retryable, code ``internal_error``: an unexpected exception is a
      bug, and retrying a bug only delays the report (upstream's message level retries it).

    A turn result (anything with ``error_code`` and ``retryable``, e.g. ``TurnResult``): its
    code and flag; its ``error`` text is the message. A result without ``error_code`` is a
    success and raises ``ValueError``.

    Then, whatever the flag said:

    * a code in ``GOVERNANCE_CODES`` → not retryable, reason ``policy_error``, except
      that ``tool_permission_denied``, ``agent_contract_violation`` and a ToolError's
      ``permission_denied`` keep upstream's own reason; a code in ``INVALID_CODES`` → not
      retryable, reason the tool reason (``tool_unsupported``) or the code;
    * an entry of ``non_retryable`` equal to the code, or — upstream compatibility — contained in
      the message (both case-insensitive) → not retryable, reason ``configured_non_retryable``.
    """
    code, retryable, message, from_tool = _facts(error)
    key = code.strip().lower()
    tool_reason = TOOL_REASONS.get(key) if from_tool else None
    if key in GOVERNANCE_CODES:
        reason = tool_reason or (key if key in _OWN_REASONS else "policy_error")
        return Classification(False, code, reason, message)
    if key in INVALID_CODES:
        return Classification(False, code, tool_reason or key, message)
    lowered = message.lower()
    for entry in (non_retryable,) if isinstance(non_retryable, str) else non_retryable:
        token = entry.strip().lower()
        if token and (token == key or token in lowered):
            return Classification(False, code, "configured_non_retryable", message)
    return Classification(retryable, code, tool_reason or key, message)


def _facts(error: object) -> tuple[str, bool, str, bool]:
    """(code, retryable, message, is a tool error) of an exception or a failed turn result."""
    if isinstance(error, BaseException):
        text = str(error) or type(error).__name__
        if isinstance(error, OrlojError):
            retryable = bool(getattr(error, "retryable", False))
            return error.code, retryable, error.message or text, isinstance(error, ToolError)
        if isinstance(error, TimeoutError):
            return "timeout", True, text, False
        if isinstance(error, asyncio.CancelledError):
            return "canceled", False, text, False
        if isinstance(error, _PERMANENT_OS_ERRORS):
            return "internal_error", False, text, False
        if isinstance(error, OSError):
            return "transient", True, text, False
        return "internal_error", False, text, False
    if isinstance(error, FailedTurn):
        code = str(error.error_code or "").strip()
        if not code:
            raise ValueError("classify() needs a failure: the turn result has no error_code")
        return code, bool(error.retryable), str(getattr(error, "error", "") or code), False
    raise TypeError(f"classify() takes an exception or a turn result, got {type(error).__name__}")


# --------------------------------------------------------------------------------------------
# Decision


@dataclass(frozen=True)
class Outcome:
    """What to do after a failed try. The caller writes it; upstream's texts from its pieces:

    * message retry trace ``agent_message_retry_scheduled``:
      ``message_id=<id> attempt=<attempts>/<max_attempts> delay=<go_duration(delay_s)> error=<error>``
    * message not retryable, trace ``agent_message_non_retryable``: ``message_id=<id> reason=<reason> error=<error>``
    * message dead-letter, task ``lastError``: ``message <id> dead-lettered after <attempts> attempts: <error>``
    * task retry, ``lastError``: ``<error> (retry scheduled in <go_duration(delay_s)>)``
    * tool, after the last try: ``tool "<tool>" failed after <attempts> attempt(s): <error>``
    """

    final: bool
    """True: stop (``DeadLetter`` or ``Failed``). False: try again after ``delay_s``."""
    delay_s: float
    """Seconds to wait before the next try; 0 when final."""
    code: str
    """The error's code (``Classification.code``)."""
    reason: str
    """``Classification.reason``: why the error is or is not retryable."""
    phase: Phase
    """``RetryPending`` (retry after ``delay_s``); ``DeadLetter`` (attempts exhausted, or not
    retryable at message and tool level); ``Failed`` (task level, not retryable: upstream's
    ``markFailed``)."""
    retryable: bool = False
    """The classification; ``final and retryable`` means the attempts ran out."""
    attempts: int = 0
    """Tries made so far, the failed one included."""
    max_attempts: int = 0
    """The policy's ``max_attempts``."""
    error: str = ""
    """The error's text."""

    @property
    def exhausted(self) -> bool:
        """Final because the attempts ran out (not because the error is permanent)."""
        return self.final and self.retryable


def decide(policy: RetryPolicy, attempts: int, error: BaseException | FailedTurn, key: str = "") -> Outcome:
    """Retry or stop after ``attempts`` tries (the failed one included) ended in ``error``.

    Retry (``RetryPending``, after ``delay(policy, attempts, key)``) when the error is
    retryable and ``attempts < policy.max_attempts``; otherwise stop: ``DeadLetter``, or
    ``Failed`` for a non-retryable error at task level. ``key`` seeds the jitter: the message's
    idempotency key, the tool's name; unused at task level.
    """
    _check_attempts(attempts)
    c = classify(error, policy.non_retryable)
    common = dict(code=c.code, reason=c.reason, retryable=c.retryable, attempts=attempts,
                  max_attempts=policy.max_attempts, error=c.message)
    if c.retryable and attempts < policy.max_attempts:
        return Outcome(final=False, delay_s=delay(policy, attempts, key), phase="RetryPending", **common)
    phase: Phase = "Failed" if policy.scope == "task" and not c.retryable else "DeadLetter"
    return Outcome(final=True, delay_s=0.0, phase=phase, **common)


@dataclass
class Backoff:
    """Waits for a loop that keeps trying something until it answers (a log, a database, a
    peer): ``base_s``, then doubling, at most ``cap_s``; ``reset()`` after a success. The one
    exponential backoff of the codebase besides ``RetryPolicy``'s upstream schedules."""

    base_s: float
    cap_s: float
    attempt: int = 0

    def next(self) -> float:
        """The wait before the next try (the first call returns ``base_s``)."""
        self.attempt += 1
        return min(self.base_s * 2 ** min(self.attempt - 1, 30), self.cap_s)

    def reset(self) -> None:
        self.attempt = 0


__all__ = [
    "Backoff", "GOVERNANCE_CODES", "INVALID_CODES", "JITTER_MODES", "MESSAGE_MAX_BACKOFF_S", "NEVER_RETRY_CODES",
    "TOOL_MAX_BACKOFF_S", "Classification", "FailedTurn", "Outcome", "RetryPolicy",
    "classify", "decide", "delay", "delay_ns", "go_duration", "jitter_unit",
]
