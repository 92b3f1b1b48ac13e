"""The HTTP half every real provider shares: one pooled client, timeouts, retries, error codes.

A provider subclass builds the URL, headers and JSON body, and parses the JSON reply; the
POST itself goes through ``HttpProvider._post`` which:

* sends it on the provider instance's one ``httpx.AsyncClient`` (connection pooling; a new
  client is made if the instance is used from another event loop, since pooled connections
  belong to the loop that opened them);
* retries HTTP 429 and 5xx, timeouts and connection failures, at most ``max_attempts`` tries,
  waiting the server's ``Retry-After`` (seconds or HTTP date; ``retry-after-ms`` too) or else
  a capped exponential backoff with equal jitter; a ``Retry-After`` longer than
  ``max_retry_after_s`` is not waited for in the call: the error is raised at once, retryable,
  so the message level schedules the retry instead of holding the turn;
* turns every failure into a ``ModelError`` whose code says what happened:

  ===============================  ==========  ===========================================
  code                             retryable   when
  ===============================  ==========  ===========================================
  ``model_gateway_http_<status>``  429, 5xx    HTTP status >= 400 (upstream's reason names)
  ``model_timeout``                yes         no answer within ``timeout``
  ``model_unavailable``            yes         connection refused, reset, DNS, protocol
  ``model_bad_response``           yes (*)     2xx body that is not the provider's JSON
  ``model_config_invalid``         no          bad endpoint options, missing base URL
  ===============================  ==========  ===========================================

(*) not retried inside the call (a proxy's error page may pass; the turn's next step or the
message level retries); a body over 32 MiB is not retryable.

Streaming (``_post_stream``) goes through the same loop: the request, the statuses, the
retries and the codes are the same; a stream that is cut, or ends before the provider's end
marker, is ``model_unavailable`` (retried in the call, the sink told to ``restart``), and
``timeout`` bounds each whole attempt, as it does a non-streaming answer (a model that keeps
sending tokens past it does not make the call last longer). A provider's ``StreamAssembler``
turns the events into the document its non-streaming answer would have been; a 2xx answer
that is plain JSON (a server that ignored ``stream: true``) is read as that document.

The text of an HTTP error is upstream's ``model request failed status=<code>: <provider
message>``. The API key never appears in it: provider text passes ``orloj_ray.redact`` (the
key itself, bearer tokens, ``sk-`` keys, ...), and no log line carries headers.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timezone
from typing import Any, Protocol

import httpx

from orloj_ray.retry import Backoff
from orloj_ray.gateway.base import Endpoint, ModelError, TokenSink
from orloj_ray.redact import redact
from orloj_ray.resources import parse_duration

log = logging.getLogger("orloj_ray.gateway")

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""Upstream's read cap on a model response."""
MAX_ERROR_TEXT = 500



@dataclass(frozen=True)
class HttpSettings:
    """How one provider talks HTTP. Validated on construction (``ValueError`` naming the field)."""

    timeout_s: float = 30.0
    """Per-request timeout (connect, read, write, pool). Upstream's default 30 s; endpoint
    option ``timeout`` (a duration such as ``45s``) overrides it."""
    max_attempts: int = 3
    """Tries per call, the first included; 1 = no retry. Endpoint option ``max_retries``
    (retries after the first try) overrides it. Default 3."""
    backoff_s: float = 0.5
    """Wait before the first retry when the server gives no ``Retry-After``; doubles each
    retry. Default 0.5 s."""
    max_backoff_s: float = 8.0
    """Cap on one computed backoff. Default 8 s."""
    max_retry_after_s: float = 30.0
    """Longest ``Retry-After`` waited for inside one call; a longer one ends the call with a
    retryable error. Default 30 s."""

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        for name in ("backoff_s", "max_backoff_s", "max_retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def backoff(self, retry: int, unit: float) -> float:
        """Delay before retry number ``retry`` (1-based): equal jitter over the capped exponential."""
        capped = Backoff(self.backoff_s, self.max_backoff_s, retry - 1).next()
        return capped / 2 + capped / 2 * unit


def normalized_options(endpoint: Endpoint) -> dict[str, str]:
    """Upstream's option normalisation: keys trimmed and lower-cased, values trimmed, blanks dropped."""
    out = {}
    for key, value in (endpoint.options or {}).items():
        k = str(key).strip().lower()
        if k:
            out[k] = str(value).strip()
    return out


def config_error(endpoint: Endpoint, message: str) -> ModelError:
    return ModelError(f'model endpoint "{endpoint.name}" ({endpoint.provider}): {message}',
                      code="model_config_invalid")


def bad_response(endpoint: Endpoint, exc: Exception) -> ModelError:
    """A 2xx answer whose JSON is not shaped as the provider documents (retryable: see above)."""
    return ModelError(f"decode model response from endpoint {endpoint.name}: unexpected shape "
                      f"({type(exc).__name__})", retryable=True, code="model_bad_response")


def int_option(endpoint: Endpoint, options: dict[str, str], key: str, *, minimum: int = 1) -> int | None:
    if key not in options or options[key] == "":
        return None
    try:
        value = int(options[key])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise config_error(endpoint, f'invalid option {key} "{options[key]}": expected an integer >= {minimum}')
    return value


def float_option(endpoint: Endpoint, options: dict[str, str], key: str) -> float | None:
    if key not in options or options[key] == "":
        return None
    try:
        return float(options[key])
    except ValueError:
        raise config_error(endpoint, f'invalid option {key} "{options[key]}": expected a number') from None


def retry_after_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
    """The server's requested wait: ``retry-after-ms``, else ``Retry-After`` as seconds or an
    HTTP date (RFC 9110 §10.2.3). ``None`` when absent or unreadable; never negative."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else time.time()
    return max(when.timestamp() - current, 0.0)


def provider_message(body: bytes) -> str:
    """The human part of a provider's error body: OpenAI/Azure/Anthropic ``error.message``,
    Ollama ``error``; else the body itself."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"]).strip()
        if isinstance(err, str) and err.strip():
            return err.strip()
        if doc.get("message"):
            return str(doc["message"]).strip()
    return text


class HttpProvider:
    """Base of the HTTP providers. Holds the settings and the pooled client; no key, no endpoint."""

    name = "http"
    default_timeout_s = 30.0

    def __init__(self, settings: HttpSettings | None = None, *, sleep: Callable[[float], Awaitable[Any]] | None = None,
                 jitter: Callable[[], float] = random.random):
        self.settings = settings or HttpSettings(timeout_s=self.default_timeout_s)
        self._sleep = sleep or asyncio.sleep
        self._jitter = jitter
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(settings={self.settings!r})"

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                follow_redirects=False,
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed and self._loop is asyncio.get_running_loop():
            await client.aclose()

    def settings_for(self, endpoint: Endpoint, options: dict[str, str]) -> HttpSettings:
        """This endpoint's settings: the provider's, with options ``timeout`` and ``max_retries``."""
        settings = self.settings
        if options.get("timeout"):
            try:
                seconds = parse_duration(options["timeout"]).total_seconds()
            except ValueError:
                seconds = 0
            if seconds <= 0:
                raise config_error(endpoint, f'invalid model endpoint timeout "{options["timeout"]}" '
                                             '(expected a duration such as "45s")')
            settings = replace(settings, timeout_s=seconds)
        retries = int_option(endpoint, options, "max_retries", minimum=0)
        if retries is not None:
            settings = replace(settings, max_attempts=retries + 1)
        return settings

    async def _post(self, endpoint: Endpoint, url: str, headers: dict[str, str], body: dict,
                    settings: HttpSettings) -> dict:
        """POST ``body`` as JSON with retries; the decoded JSON object of a 2xx answer."""
        return await self._exchange(endpoint, url, headers, body, settings)

    async def _post_stream(self, endpoint: Endpoint, url: str, headers: dict[str, str], body: dict,
                           settings: HttpSettings, assembler: Callable[[], "StreamAssembler"],
                           sink: TokenSink) -> dict:
        """POST ``body`` (which asks for a stream) with the same retries; each text delta goes to
        ``sink`` as it arrives; returns the document the stream assembled (``assembler()``, one
        per attempt), as ``_post`` would have returned it."""
        return await self._exchange(endpoint, url, headers, body, settings, _Stream(assembler, sink))

    async def _exchange(self, endpoint: Endpoint, url: str, headers: dict[str, str], body: dict,
                        settings: HttpSettings, stream: "_Stream | None" = None) -> dict:
        payload = json.dumps(body).encode()
        accept = stream.accept if stream else "application/json"
        headers = {"Content-Type": "application/json", "Accept": accept, **headers}
        secrets = (endpoint.api_key,) if endpoint.api_key else ()
        await refuse_metadata_hosts(endpoint, url)
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                status, resp_headers, data = await self._send(url, headers, payload, settings.timeout_s, stream)
            except (httpx.TimeoutException, TimeoutError):
                error = ModelError(f"model request timed out after {settings.timeout_s:g}s "
                                   f"(endpoint {endpoint.name})", retryable=True, code="model_timeout")
            except httpx.HTTPError as exc:
                detail = redact(f"{type(exc).__name__}: {exc}", secrets)[:MAX_ERROR_TEXT]
                error = ModelError(f"model request failed (endpoint {endpoint.name}): {detail}",
                                   retryable=True, code="model_unavailable")
            except StreamIncomplete as exc:
                error = ModelError(f"model stream from endpoint {endpoint.name} ended early: {exc}",
                                   retryable=True, code="model_unavailable")
            except StreamDecodeError as exc:
                raise bad_response(endpoint, exc.__cause__ or exc) from None
            else:
                if status < 400:
                    return data if isinstance(data, dict) else self._decode(endpoint, data)
                error = self._http_error(endpoint, status, data, secrets)
                if error.retryable:
                    wait = retry_after_seconds(resp_headers)
                    if wait is not None and wait > settings.max_retry_after_s:
                        raise ModelError(f"{error.message} (server asked to retry after {wait:g}s)",
                                         retryable=True, code=error.code)
            if not error.retryable or attempt >= settings.max_attempts:
                raise error
            if stream is not None:
                stream.restart()
            delay = wait if wait is not None else settings.backoff(attempt, self._jitter())
            log.warning("model call to endpoint %s (%s) failed with %s, attempt %d/%d; retrying in %.2fs",
                        endpoint.name, self.name, error.code, attempt, settings.max_attempts, delay)
            await self._sleep(delay)

    async def _send(self, url: str, headers: dict[str, str], payload: bytes, timeout_s: float,
                    stream: "_Stream | None" = None) -> tuple[int, httpx.Headers, bytes | dict]:
        async with self._http().stream("POST", url, content=payload, headers=headers,
                                       timeout=httpx.Timeout(timeout_s)) as resp:
            if stream is not None and resp.status_code < 400 and stream.streamed(resp):
                async with asyncio.timeout(timeout_s):  # the whole answer, as a non-streaming one
                    return resp.status_code, resp.headers, await stream.read(resp)
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise ModelError(f"model response larger than {MAX_RESPONSE_BYTES} bytes",
                                     code="model_bad_response")
                chunks.append(chunk)
            return resp.status_code, resp.headers, b"".join(chunks)

    @staticmethod
    def _http_error(endpoint: Endpoint, status: int, data: bytes, secrets: tuple[str, ...]) -> ModelError:
        text = redact(provider_message(data), secrets)
        if len(text) > MAX_ERROR_TEXT:
            text = text[:MAX_ERROR_TEXT] + "…"
        message = f"model request failed status={status}: {text or httpx.codes.get_reason_phrase(status)}"
        if status in (401, 403):
            message += f' (check the API key of model endpoint "{endpoint.name}": auth.secretRef)'
        retryable = status == 429 or status >= 500
        return ModelError(message, retryable=retryable, code=f"model_gateway_http_{status}")

    @staticmethod
    def _decode(endpoint: Endpoint, data: bytes) -> dict:
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ModelError(f"decode model response from endpoint {endpoint.name}: not a JSON object",
                             retryable=True, code="model_bad_response")
        return doc


class StreamIncomplete(Exception):
    """The streamed answer stopped before the provider's end marker (a cut stream)."""


class StreamDecodeError(Exception):
    """An event of the stream is not what the provider documents (``__cause__`` says how)."""


class StreamAssembler(Protocol):
    """Reads one streamed answer into the provider's non-streaming JSON document."""

    framing: str
    """``sse`` (``event:``/``data:`` lines) or ``ndjson`` (one JSON object per line)."""

    def feed(self, data: str, event: str = "") -> str:
        """Take one event's data; return the text it adds (``""`` if none). Raises ValueError,
        TypeError, KeyError or AttributeError for an event that is not the documented shape."""

    @property
    def ended(self) -> bool:
        """The end marker has been read: stop reading."""

    @property
    def complete(self) -> bool:
        """Enough has been read for the answer to stand when the body ends here."""

    def doc(self) -> dict:
        """The answer as the provider's non-streaming JSON document."""


class SseLines:
    """Server-sent event framing: ``line(text)`` per line; ``(event, data)`` when one ends."""

    def __init__(self):
        self._event, self._data = "", []

    def line(self, text: str) -> tuple[str, str] | None:
        if text == "":
            return self.flush()
        if text.startswith(":"):
            return None
        key, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            self._event = value
        elif key == "data":
            self._data.append(value)
        return None

    def flush(self) -> tuple[str, str] | None:
        event, data = self._event, self._data
        self._event, self._data = "", []
        return (event, "\n".join(data)) if data else None


class _Stream:
    """One streaming call: makes an assembler per attempt, feeds it, passes text to the sink."""

    def __init__(self, assembler: Callable[[], StreamAssembler], sink: TokenSink):
        self._make, self._sink = assembler, sink
        self._sent = False  # text of this attempt reached the sink
        framing = getattr(assembler, "framing", "sse")  # the assembler class's
        self.accept = "application/x-ndjson" if framing == "ndjson" else "text/event-stream"

    @staticmethod
    def streamed(resp: httpx.Response) -> bool:
        """A 2xx answer in a streaming type; plain JSON (``stream`` ignored) is read as before."""
        return "json" not in resp.headers.get("content-type", "").replace("ndjson", "")

    def restart(self) -> None:
        """Before a retry: text already streamed is void."""
        if self._sent:
            self._sent = False
            self._sink("", restart=True)

    async def read(self, resp: httpx.Response) -> dict:
        assembler, size = self._make(), 0
        frames = SseLines() if assembler.framing == "sse" else None
        try:
            async for line in resp.aiter_lines():
                size += len(line) + 1
                if size > MAX_RESPONSE_BYTES:
                    raise ModelError(f"model response larger than {MAX_RESPONSE_BYTES} bytes",
                                     code="model_bad_response")
                item = frames.line(line) if frames is not None else (("", line) if line.strip() else None)
                if item is not None:
                    self._take(assembler, *item)
                    if assembler.ended:
                        break
            else:
                last = frames.flush() if frames is not None else None
                if last is not None:
                    self._take(assembler, *last)
            if not assembler.complete:
                raise StreamIncomplete("no end-of-answer event")
            return assembler.doc()
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StreamDecodeError(type(exc).__name__) from exc

    def _take(self, assembler: StreamAssembler, event: str, data: str) -> None:
        delta = assembler.feed(data, event)
        if delta:
            self._sent = True
            self._sink(delta)


def base_url(endpoint: Endpoint, default: str) -> str:
    url = (endpoint.base_url or "").strip() or default
    if not url:
        raise config_error(endpoint, "spec.base_url is required for this provider")
    if not url.startswith(("http://", "https://")):
        raise config_error(endpoint, f'spec.base_url "{url}" must start with http:// or https://')
    return url.rstrip("/")


async def refuse_metadata_hosts(endpoint: Endpoint, url: str) -> None:
    """A model endpoint may be private or loopback (a local Ollama), but never a cloud-metadata
    or link-local address: a manifest's ``base_url`` must not turn the gateway into a way to
    read instance credentials. Checked on every call (the host may resolve differently)."""
    import asyncio
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    from orloj_ray.addresses import METADATA

    host = urlsplit(url).hostname or ""
    try:
        addresses = [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return  # unresolvable: the request itself fails with a clear connect error
        addresses = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
    for ip in addresses:
        mapped = getattr(ip, "ipv4_mapped", None) or ip
        if mapped in METADATA or mapped.is_link_local:
            raise ModelError(f'model endpoint "{endpoint.name}": {host} is a cloud-metadata or link-local address, '
                             f"which model calls may never reach (set spec.base_url to the provider's API)",
                             code="model_egress_denied")
