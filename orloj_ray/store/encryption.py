"""Secrets encrypted at rest: every Secret ``spec.data`` value is stored AES-256-GCM encrypted.

``EncryptedSecrets(store, keyring)`` wraps a Store: a Secret written through it is stored as
``enc:v1:<key id>:<base64 of nonce + ciphertext>`` per data value (the additional data binds it
to ``<namespace>/<name>/<key>``, so a value cannot be moved to another Secret), and read back
decrypted; every other kind passes untouched. The key id (the first 8 bytes of the key's
SHA-256, hex) stored beside each value says which key decrypts it. Values written before
encryption (plain base64) still read, and are encrypted by ``reencrypt``.

Keys (``load_keyring``): ``ServerConfig.secret_key`` (``ORLOJ_SECRET_KEY``: one or more keys,
comma-separated, each 32 bytes as base64 or 64 hex digits; the first encrypts, all decrypt),
else the key file ``ServerConfig.secret_key_file`` (``ORLOJ_SECRET_KEY_FILE``, one key a line),
else, for PostgreSQL, ``$ORLOJ_HOME/secret.key`` (``~/.orloj/secret.key``), created with a random
key (mode 0600) on a store that holds no encrypted value yet; for the memory store, whose data
dies with its process, a random key that lives in memory only. ``check`` refuses to start a
store holding values whose key is not given, naming the key ids and where keys come from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets as _random
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.errors import Conflict, NotFound

log = logging.getLogger("orloj_ray.store.encryption")

PREFIX = "enc:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_HELP = ("set ORLOJ_SECRET_KEY (comma-separated keys, each 32 bytes as base64 or hex) or ORLOJ_SECRET_KEY_FILE "
            "to the key(s) this store was written with")


class SecretDecryptError(Exception):
    """A stored value cannot be decrypted with the keys given (wrong key, or tampered)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def parse_key(text: str, where: str) -> bytes:
    """A 32-byte key from 64 hex digits or base64 (standard or URL-safe); ConfigError otherwise."""
    text = text.strip()
    raw = b""
    if len(text) == 2 * KEY_BYTES:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
    if not raw:
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text)
                                   else None, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{where}: a secret key must be 32 bytes, as 64 hex digits or base64 "
                          f"(e.g. `openssl rand -base64 32`)")
    return raw


def new_key_text() -> str:
    return base64.b64encode(_random.token_bytes(KEY_BYTES)).decode()


@dataclass
class Keyring:
    keys: list[bytes]
    """The first encrypts; every one decrypts."""
    source: str
    """Where the keys come from, for messages: ``ORLOJ_SECRET_KEY``, a file path, or ``memory``."""
    path: Path | None = None
    """The key file, when keys come from one (``rotate`` writes the new key there)."""
    _by_id: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError(f"{self.source}: no secret key")
        self._by_id = {key_id(k): k for k in self.keys}

    def __repr__(self) -> str:  # never the keys
        return f"Keyring({self.ids}, source={self.source!r})"

    @property
    def ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    @property
    def primary_id(self) -> str:
        return key_id(self.keys[0])

    def encrypt(self, value: str, aad: str) -> str:
        nonce = _random.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.keys[0]).encrypt(nonce, value.encode(), aad.encode())
        return f"{PREFIX}{self.primary_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, value: str, aad: str) -> str:
        if not is_encrypted(value):
            return value
        kid, _, payload = value[len(PREFIX):].partition(":")
        key = self._by_id.get(kid)
        if key is None:
            raise SecretDecryptError(f"secret {aad}: encrypted with key {kid}, which is not given ({KEY_HELP})")
        try:
            raw = base64.b64decode(payload, validate=True)
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretDecryptError(f"secret {aad}: the stored value does not decrypt with key {kid} "
                                     "(changed or moved)") from None


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def value_key_id(value: object) -> str:
    """The key id of an encrypted value, ``""`` for a plain one."""
    return value[len(PREFIX):].split(":", 1)[0] if is_encrypted(value) else ""


def _read_key_file(path: Path) -> list[bytes]:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [parse_key(line, f"{path} line {i + 1}") for i, line in enumerate(lines)]


def default_key_file() -> Path:
    return Path(os.environ.get("ORLOJ_HOME") or Path.home() / ".orloj").expanduser() / "secret.key"


def configured_keyring(config: ServerConfig) -> Keyring | None:
    """The keys the configuration names (variable or file), None when it names none."""
    if config.secret_key.strip():
        keys = [parse_key(k, f"ORLOJ_SECRET_KEY entry {i + 1}")
                for i, k in enumerate(k for k in config.secret_key.split(",") if k.strip())]
        return Keyring(keys, "ORLOJ_SECRET_KEY")
    if config.secret_key_file.strip():
        path = Path(config.secret_key_file).expanduser()
        try:
            return Keyring(_read_key_file(path), str(path), path)
        except OSError as exc:
            raise ConfigError(f"ORLOJ_SECRET_KEY_FILE {path}: cannot read it: {exc.strerror or exc}") from None
    return None


def write_key_file(path: Path, lines: list[str]) -> None:
    """Write keys (one a line) readable by this user only, replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# orloj-ray secret keys: the first encrypts, every one decrypts. Keep a copy.\n")
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def default_keyring(config: ServerConfig, *, may_create: bool) -> Keyring:
    """Without configured keys: a random in-memory key for the memory store; for PostgreSQL the
    key file under ``$ORLOJ_HOME``, created when absent and ``may_create`` (nothing encrypted yet)."""
    if config.store == "memory":
        return Keyring([_random.token_bytes(KEY_BYTES)], "memory")
    path = default_key_file()
    if not path.exists():
        if not may_create:
            raise ConfigError(f"the store holds encrypted secrets but no key is given and {path} does not exist: "
                              f"{KEY_HELP}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # two starters: one writes
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = None
        if fd is not None:
            with os.fdopen(fd, "w") as f:
                f.write("# orloj-ray secret keys: the first encrypts, every one decrypts. Keep a copy.\n")
                f.write(new_key_text() + "\n")
            log.warning("generated a secret encryption key in %s: keep a copy; without it the secrets stored in "
                        "this database cannot be read (or set ORLOJ_SECRET_KEY)", path)
    return Keyring(_read_key_file(path), str(path), path)


def _aad(obj: dict, key: str) -> str:
    meta = obj.get("metadata") or {}
    return f'{meta.get("namespace") or "default"}/{meta.get("name")}/{key}'


def _data(obj: dict | None) -> dict:
    if not isinstance(obj, dict) or obj.get("kind") != "Secret":
        return {}
    data = (obj.get("spec") or {}).get("data")
    return data if isinstance(data, dict) else {}


def _with_data(obj: dict, data: dict) -> dict:
    return {**obj, "spec": {**(obj.get("spec") or {}), "data": data}}


class EncryptedSecrets:
    """A Store whose Secrets are encrypted at rest (see the module docstring); every other call
    and kind goes straight through."""

    def __init__(self, store, keyring: Keyring):
        self.inner = store
        self.keyring = keyring

    def __getattr__(self, name: str):  # close(), connect options, ...: the wrapped store's
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"EncryptedSecrets({self.inner!r}, {self.keyring!r})"

    # -- the transformation ------------------------------------------------------------------

    def _open(self, obj):
        data = _data(obj)
        if not any(is_encrypted(v) for v in data.values()):
            return obj
        return _with_data(obj, {k: self.keyring.decrypt(v, _aad(obj, k)) for k, v in data.items()})

    async def _seal(self, obj: dict) -> dict:
        """The object to store: each value encrypted, reusing the stored ciphertext of a value
        that did not change (so an unchanged apply keeps the same spec and generation)."""
        data = _data(obj)
        if not data:
            return obj
        meta = obj.get("metadata") or {}
        try:
            current = _data(await self.inner.get("Secret", meta.get("namespace") or "default", meta.get("name")))
        except NotFound:
            current = {}
        sealed = {}
        for k, v in data.items():
            if is_encrypted(v):  # an already sealed value (rotation writes these)
                sealed[k] = v
                continue
            old = current.get(k)
            if value_key_id(old) == self.keyring.primary_id:
                try:
                    if self.keyring.decrypt(old, _aad(obj, k)) == v:
                        sealed[k] = old
                        continue
                except SecretDecryptError:
                    pass
            sealed[k] = self.keyring.encrypt(v, _aad(obj, k))
        return _with_data(obj, sealed)

    # -- the Store protocol ------------------------------------------------------------------

    async def create(self, obj: dict, **kw) -> dict:
        return self._open(await self.inner.create(await self._seal(obj), **kw))

    async def upsert(self, obj: dict, **kw) -> tuple[dict, bool]:
        stored, created = await self.inner.upsert(await self._seal(obj), **kw)
        return self._open(stored), created

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        return self._open(await self.inner.get(kind, namespace, name))

    async def list(self, kind: str, *args, **kwargs):
        page = await self.inner.list(kind, *args, **kwargs)
        if kind == "Secret":
            page.items = [self._open(o) for o in page.items]
        return page

    async def update(self, obj: dict, expected_rv: str, **kw) -> dict:
        return self._open(await self.inner.update(await self._seal(obj), expected_rv, **kw))

    async def update_status(self, *args, **kwargs) -> dict:
        return self._open(await self.inner.update_status(*args, **kwargs))

    async def claim(self, *args, **kwargs):
        return self._open(await self.inner.claim(*args, **kwargs))

    async def delete(self, *args, **kwargs) -> dict:
        return self._open(await self.inner.delete(*args, **kwargs))

    # -- keys ----------------------------------------------------------------------------------

    async def _secrets(self) -> list[dict]:
        items, after = [], None
        while True:
            page = await self.inner.list("Secret", None, None, 1000, after)
            items += page.items
            if not page.continue_ or not page.items:
                return items
            after = page.continue_

    async def key_usage(self) -> dict[str, int]:
        """Stored values per key id (``""``: values stored in plain text)."""
        usage: dict[str, int] = {}
        for obj in await self._secrets():
            for value in _data(obj).values():
                kid = value_key_id(value)
                usage[kid] = usage.get(kid, 0) + 1
        return usage

    async def reencrypt(self) -> int:
        """Store every Secret value that is not under the first key (or is plain) under it; the
        number of Secrets rewritten. A Secret changed meanwhile is read again."""
        rewritten = 0
        for obj in await self._secrets():
            for _ in range(5):
                data = _data(obj)
                if all(value_key_id(v) == self.keyring.primary_id for v in data.values()):
                    break
                opened = self._open(obj)
                sealed = _with_data(opened, {k: self.keyring.encrypt(v, _aad(obj, k)) for k, v in _data(opened).items()})
                try:
                    await self.inner.update(sealed, obj["metadata"]["resourceVersion"], source="secret-key-rotation")
                    rewritten += 1
                    break
                except Conflict:
                    meta = obj["metadata"]
                    try:
                        obj = await self.inner.get("Secret", meta["namespace"], meta["name"])
                    except NotFound:
                        break
                except NotFound:
                    break
        return rewritten

    async def rotate_secret_key(self) -> dict:
        """``orloj admin rotate-secret-key``: with keys in a file (or in memory), a new key goes
        first, every value is re-encrypted under it and the keys no value uses any more are
        dropped; with ``ORLOJ_SECRET_KEY`` (which the server cannot change), every value is
        re-encrypted under its first key and the unused ones are reported."""
        ring = self.keyring
        generated = ring.source != "ORLOJ_SECRET_KEY"
        if generated:
            self.keyring = Keyring([_random.token_bytes(KEY_BYTES), *ring.keys], ring.source, ring.path)
            if ring.path is not None:
                write_key_file(ring.path, [base64.b64encode(k).decode() for k in self.keyring.keys])
        rewritten = await self.reencrypt()
        usage = await self.key_usage()
        unused = [kid for kid in self.keyring.ids[1:] if kid not in usage]
        if generated and unused:
            kept = [k for k in self.keyring.keys if key_id(k) not in unused]
            self.keyring = Keyring(kept, ring.source, ring.path)
            if ring.path is not None:
                write_key_file(ring.path, [base64.b64encode(k).decode() for k in kept])
        log.info("secret key rotation: %d secrets re-encrypted under key %s", rewritten, self.keyring.primary_id)
        return {"keyId": self.keyring.primary_id, "reencrypted": rewritten, "keySource": ring.source,
                "keys": self.keyring.ids, "unusedKeys": [] if generated else unused,
                "valuesByKey": {k or "plain": n for k, n in usage.items()}}


async def check_keys(store, keyring: Keyring) -> dict[str, int]:
    """Refuse (ConfigError) a store that holds values under keys not in ``keyring``."""
    usage = await EncryptedSecrets(store, keyring).key_usage()
    missing = sorted(k for k in usage if k and k not in keyring.ids)
    if missing:
        raise ConfigError(f"the store holds secrets encrypted with key(s) {', '.join(missing)}, which "
                          f"{keyring.source} does not have: {KEY_HELP}")
    return usage


async def encrypted(store, config: ServerConfig) -> EncryptedSecrets:
    """``store`` with its Secrets encrypted at rest under the configured keys (see the module
    docstring), after checking that those keys open what it holds; plain values left by an
    earlier version are encrypted now."""
    keyring = configured_keyring(config)
    if keyring is None:
        usage = await EncryptedSecrets(store, Keyring([b"\0" * KEY_BYTES], "none")).key_usage()
        keyring = default_keyring(config, may_create=not any(usage))
    await check_keys(store, keyring)
    wrapped = EncryptedSecrets(store, keyring)
    plain = await wrapped.reencrypt() if config.store == "postgres" else 0
    if plain:
        log.info("encrypted %d Secrets that were stored in plain text", plain)
    return wrapped
