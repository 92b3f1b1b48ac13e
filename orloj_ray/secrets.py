"""The one way a Secret's value is read: model endpoints, tools, MCP servers, memories, webhooks.

A reference is ``name``, ``ns/name`` or ``name:key``; a Secret of another namespace is read
only when it is shared with the referring one (``orloj_ray.tenancy``). The Secret in the store is asked first
(its ``data[key]``, base64); only then the server's environment, and there only the variable
``ORLOJ_SECRET_<NAME>`` (the name upper-cased, every other character ``_``), as upstream
documents. The reference itself is never looked up as a variable name: a manifest could
otherwise name ``ORLOJ_DATABASE_URL``, ``ORLOJ_API_TOKENS`` or ``AWS_SECRET_ACCESS_KEY`` and
send the server's own credentials to any endpoint it likes. Upstream's code also tries the raw
and the normalized reference (execution.md section 14); we do not (docs/compatibility.md).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping

from orloj_ray.errors import NotFound
from orloj_ray.tenancy import not_shared, shared_with

ENV_PREFIX = "ORLOJ_SECRET_"
RESERVED = frozenset({"ORLOJ_SECRET_KEY", "ORLOJ_SECRET_KEY_FILE"})
"""The server's own settings under the prefix (the keys that encrypt Secrets at rest): never
read for a reference (``secretRef: key`` would otherwise hand out the encryption key)."""

FIRST_KEY = ""
"""``key`` value that takes the first data key in sorted order (TaskWebhook's HMAC key)."""


def env_name(name: str) -> str:
    """``openai-api-key`` -> ``ORLOJ_SECRET_OPENAI_API_KEY``."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def parse_ref(ref: str, namespace: str, default_key: str = "value") -> tuple[str, str, str]:
    """``(namespace, name, key)`` of a reference; a ``:key`` suffix overrides ``default_key``."""
    ref, key = ref.strip(), default_key
    if ":" in ref:
        ref, key = ref.rsplit(":", 1)
    if "/" in ref:
        ns, name = ref.split("/", 1)
        return ns or namespace, name, key
    return namespace, ref, key


def decode_value(encoded: object, what: str) -> bytes:
    """A Secret's base64 ``data`` value; ``ValueError`` naming ``what`` when it is not base64."""
    text = str(encoded).replace("\r", "").replace("\n", "").strip()
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError(f"{what} is not valid base64") from None


async def resolve_secret_bytes(store, namespace: str, ref: str, *, default_key: str = "value",
                               environ: Mapping[str, str] | None = None) -> bytes:
    """The raw value a reference names; ``LookupError`` saying what to create when there is none."""
    ns, name, key = parse_ref(ref, namespace, default_key)
    if not name:
        raise LookupError("secret reference is empty")
    try:
        secret = await store.get("Secret", ns, name)
    except NotFound:
        secret = None
    if secret is not None and not shared_with(secret, namespace):
        raise LookupError(not_shared("secret", secret, namespace))
    data = ((secret or {}).get("spec") or {}).get("data") or {}
    if key == FIRST_KEY and data:
        key = sorted(data)[0]
    if data.get(key):
        try:
            value = decode_value(data[key], f'secret "{ns}/{name}" key "{key}"')
        except ValueError as exc:
            raise LookupError(str(exc)) from None
        if value.strip():
            return value
    variable = env_name(name)
    if variable in RESERVED:
        raise LookupError(f'secret "{ns}/{name}" not found (apply a Secret; {variable} is a server setting, '
                          "never read for a reference)")
    value = (os.environ if environ is None else environ).get(variable, "").strip()
    if value:
        return value.encode()
    shown = f' key "{key}"' if key else ""
    raise LookupError(f'secret "{ns}/{name}"{shown} not found (apply a Secret or set {variable} on the server)')


async def resolve_secret(store, namespace: str, ref: str, **kwargs) -> str:
    """:func:`resolve_secret_bytes` as text, trimmed (API keys, tokens, passwords)."""
    raw = await resolve_secret_bytes(store, namespace, ref, **kwargs)
    try:
        return raw.decode().strip()
    except UnicodeDecodeError:
        raise LookupError(f'secret "{ref}" is not UTF-8 text') from None
