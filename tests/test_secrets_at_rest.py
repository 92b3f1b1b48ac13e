"""Secrets encrypted at rest in both stores (``orloj_ray/store/encryption.py``): what is stored
is AES-GCM ciphertext with its key id, what is read is the value; a store holding values under
a key that is not given refuses to start, saying which key and where keys come from; rotation
re-encrypts everything under a new key."""

from __future__ import annotations

import base64
import json
import stat

import psycopg
import pytest
from pg_server import PgServer

from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.secrets import resolve_secret
from orloj_ray.store import MemoryStore, open_store
from orloj_ray.store.encryption import EncryptedSecrets, Keyring, key_id, new_key_text, parse_key
from orloj_ray.store.postgres import PostgresStore

VALUE = "pg-password-3c2b1a09f8e7"
K1, K2 = new_key_text(), new_key_text()


def secret(name: str, value: str = VALUE, namespace: str = "default") -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "spec": {"data": {"value": base64.b64encode(value.encode()).decode()}}}


@pytest.fixture
def db_url(pg_url):
    server = PgServer(pg_url)
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ORLOJ_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def stored_rows(url: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT body FROM orloj_resources WHERE kind = 'Secret'")]


async def test_the_memory_store_holds_ciphertext_and_serves_the_value(home):
    store = await open_store(ServerConfig())
    assert isinstance(store, EncryptedSecrets) and isinstance(store.inner, MemoryStore)
    created = await store.create(secret("db"))
    assert created["spec"]["data"]["value"] == base64.b64encode(VALUE.encode()).decode()
    raw = (await store.inner.get("Secret", "default", "db"))["spec"]["data"]["value"]
    assert raw.startswith(f"enc:v1:{store.keyring.primary_id}:") and VALUE not in raw
    assert await resolve_secret(store, "default", "db") == VALUE
    assert not home.exists(), "the memory store's key lives in memory: no file is written"
    # an unchanged apply keeps the ciphertext, so the spec and generation do not change
    again, _ = await store.upsert(secret("db"))
    assert again["metadata"]["generation"] == 1
    assert (await store.inner.get("Secret", "default", "db"))["spec"]["data"]["value"] == raw
    changed, _ = await store.upsert(secret("db", "another-value-1234"))
    assert changed["metadata"]["generation"] == 2
    assert await resolve_secret(store, "default", "db") == "another-value-1234"
    # other kinds and the events are untouched: events mask Secret values anyway
    events = await store.events_after(0)
    assert all(e.data["spec"]["data"] == {"value": "***"} for e in events if e.kind == "Secret" and e.data.get("spec"))
    assert [o["metadata"]["name"] for o in (await store.list("Secret")).items] == ["db"]


async def test_a_ciphertext_moved_to_another_secret_does_not_decrypt():
    store = EncryptedSecrets(MemoryStore(), Keyring([parse_key(K1, "test")], "test"))
    await store.create(secret("a"))
    raw = (await store.inner.get("Secret", "default", "a"))["spec"]["data"]["value"]
    await store.inner.create({**secret("b"), "spec": {"data": {"value": raw}}})
    with pytest.raises(Exception, match='secret default/b/value: the stored value does not decrypt'):
        await store.get("Secret", "default", "b")


async def test_postgres_rows_hold_ciphertext_with_the_key_id(db_url, home):
    config = ServerConfig(store="postgres", database_url=db_url, secret_key=K1)
    store = await open_store(config)
    try:
        await store.create(secret("db"))
        assert await resolve_secret(store, "default", "db") == VALUE
    finally:
        await store.close()
    [row] = stored_rows(db_url)
    value = row["spec"]["data"]["value"]
    assert value.startswith(f"enc:v1:{key_id(parse_key(K1, 't'))}:")
    assert VALUE not in json.dumps(row) and base64.b64encode(VALUE.encode()).decode() not in json.dumps(row)


async def test_a_store_with_secrets_under_a_key_not_given_refuses_to_start(db_url, home, tmp_path):
    store = await open_store(ServerConfig(store="postgres", database_url=db_url, secret_key=K1))
    await store.create(secret("db"))
    await store.close()
    kid = key_id(parse_key(K1, "t"))
    with pytest.raises(ConfigError) as no_key:  # nothing configured: no key file is made up either
        await open_store(ServerConfig(store="postgres", database_url=db_url))
    assert "encrypted secrets but no key is given" in str(no_key.value) and "ORLOJ_SECRET_KEY" in str(no_key.value)
    assert not (home / "secret.key").exists()
    with pytest.raises(ConfigError) as wrong:
        await open_store(ServerConfig(store="postgres", database_url=db_url, secret_key=K2))
    assert kid in str(wrong.value) and "ORLOJ_SECRET_KEY" in str(wrong.value)
    key_file = tmp_path / "keys"
    key_file.write_text(K1 + "\n")
    store = await open_store(ServerConfig(store="postgres", database_url=db_url, secret_key_file=str(key_file)))
    try:
        assert await resolve_secret(store, "default", "db") == VALUE
    finally:
        await store.close()
    with pytest.raises(ConfigError, match="32 bytes"):
        await open_store(ServerConfig(store="postgres", database_url=db_url, secret_key="too-short"))


async def test_postgres_without_a_key_makes_one_under_orloj_home_and_keeps_using_it(db_url, home):
    store = await open_store(ServerConfig(store="postgres", database_url=db_url))
    try:
        await store.create(secret("db"))
    finally:
        await store.close()
    key_file = home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    store = await open_store(ServerConfig(store="postgres", database_url=db_url))  # the next start reads it
    try:
        assert await resolve_secret(store, "default", "db") == VALUE
    finally:
        await store.close()


async def test_plain_values_of_an_earlier_version_are_encrypted_at_start(db_url, home):
    async with await PostgresStore.connect(db_url) as plain:
        await plain.create(secret("old"))
    assert not stored_rows(db_url)[0]["spec"]["data"]["value"].startswith("enc:")
    store = await open_store(ServerConfig(store="postgres", database_url=db_url, secret_key=K1))
    try:
        assert await resolve_secret(store, "default", "old") == VALUE
    finally:
        await store.close()
    assert stored_rows(db_url)[0]["spec"]["data"]["value"].startswith("enc:v1:")


async def test_rotation_with_a_key_file_writes_a_new_key_and_drops_the_old(db_url, tmp_path, home):
    key_file = tmp_path / "keys"
    key_file.write_text(K1 + "\n")
    config = ServerConfig(store="postgres", database_url=db_url, secret_key_file=str(key_file))
    store = await open_store(config)
    try:
        await store.create(secret("a"))
        await store.create(secret("b", "second-value-5678", namespace="team-b"))
        result = await store.rotate_secret_key()
        assert result["reencrypted"] == 2 and result["keyId"] != key_id(parse_key(K1, "t"))
        assert result["keys"] == [result["keyId"]]  # the old key is no longer used: dropped
        assert await resolve_secret(store, "team-b", "b") == "second-value-5678"
    finally:
        await store.close()
    lines = [ln for ln in key_file.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1 and lines[0] != K1
    assert {r["spec"]["data"]["value"].split(":")[2] for r in stored_rows(db_url)} == {result["keyId"]}
    store = await open_store(config)  # a restart reads the rotated file
    try:
        assert await resolve_secret(store, "default", "a") == VALUE
    finally:
        await store.close()


async def test_rotation_with_the_variable_reencrypts_under_its_first_key(db_url, home):
    store = await open_store(ServerConfig(store="postgres", database_url=db_url, secret_key=K1))
    await store.create(secret("a"))
    await store.close()
    # the operator puts a new key first; the start itself already re-encrypts under it
    store = await open_store(ServerConfig(store="postgres", database_url=db_url, secret_key=f"{K2},{K1}"))
    try:
        result = await store.rotate_secret_key()
        assert result["keyId"] == key_id(parse_key(K2, "t"))
        assert result["unusedKeys"] == [key_id(parse_key(K1, "t"))]
    finally:
        await store.close()
    store = await open_store(ServerConfig(store="postgres", database_url=db_url, secret_key=K2))  # K1 retired
    try:
        assert await resolve_secret(store, "default", "a") == VALUE
    finally:
        await store.close()


async def test_the_store_actor_refuses_to_start_on_a_missing_key(ray_cluster, db_url, home):
    import uuid

    from actors.store_host import RemoteStore, start_store_host

    config = ServerConfig(store="postgres", database_url=db_url, secret_key=K1)
    name = f"orloj:store-keys-{uuid.uuid4().hex[:8]}"
    handle = start_store_host(config, detached=False, name=name)
    import ray

    try:
        store = RemoteStore(handle)
        await store.create(secret("db"))
        rotated = await store.rotate_secret_key()
        assert rotated["reencrypted"] == 0 and rotated["unusedKeys"] == []
    finally:
        ray.kill(handle, no_restart=True)
    with pytest.raises(ConfigError, match="ORLOJ_SECRET_KEY"):
        start_store_host(config.with_(secret_key=K2), detached=False, name=name + "-b")
    with pytest.raises(ValueError):  # the refused actor is gone, not left holding the name
        ray.get_actor(name + "-b", namespace="orloj")


def test_only_an_admin_rotates_and_the_answer_names_keys_not_values():
    import httpx
    from live_server import LiveServer

    from serve.app import create_app
    from serve.auth import Authenticator

    store = EncryptedSecrets(MemoryStore(), Keyring([parse_key(K1, "t")], "memory"))
    auth = Authenticator.from_config(ServerConfig(auth_mode="token", api_tokens="w:wtok-1234:writer,a:atok-1234:admin"))
    with LiveServer(create_app(store, auth=auth)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/v1/secrets", json=secret("db"), headers={"Authorization": "Bearer wtok-1234"}).status_code == 201
        refused = http.post("/v1/admin/rotate-secret-key", headers={"Authorization": "Bearer wtok-1234"})
        assert refused.status_code == 403
        done = http.post("/v1/admin/rotate-secret-key", headers={"Authorization": "Bearer atok-1234"})
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["reencrypted"] == 1 and body["keys"] == [body["keyId"]] != [key_id(parse_key(K1, "t"))]
        assert VALUE not in done.text and K1 not in done.text
        got = http.get("/v1/secrets/db", headers={"Authorization": "Bearer atok-1234"}).json()
        assert got["spec"]["data"] == {"value": "***"}


def test_orloj_admin_rotate_secret_key_on_the_running_server(cli_env):
    import subprocess
    import sys
    from pathlib import Path

    from actors.store_host import RemoteStore
    from orloj_ray.client import Client

    client = Client(cli_env["ORLOJ_SERVER"])
    client.apply([secret("rotate-me")])
    orloj = str(Path(sys.executable).parent / "orloj")
    res = subprocess.run([orloj, "admin", "rotate-secret-key"], env=cli_env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "keyId:" in res.stdout and "reencrypted:" in res.stdout and "keySource: memory" in res.stdout
    import asyncio

    assert asyncio.run(resolve_secret(RemoteStore(), "default", "rotate-me")) == VALUE
