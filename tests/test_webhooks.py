"""TaskWebhook deliveries over real HTTP (uvicorn on loopback, no Ray), plus the dedupe core."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from live_server import LiveServer
from orloj_ray.config import ServerConfig
from orloj_ray.resources import normalize
from orloj_ray.resources.tasks import webhook_endpoint_id
from orloj_ray.store import MemoryStore
from orloj_ray.webhooks import (
    DEDUPE_KIND, EVENT_ID_LABEL, WEBHOOK_LABEL, WEBHOOK_NAMESPACE_LABEL, DedupeBook, Deliveries, create_run_task,
    parse_timestamp, short_hex,
)
from serve.app import create_app
from serve.auth import Authenticator

SECRET = b"whsec-0123456789abcdef"
GH_SECRET = b"gh-hook-secret"
GENERIC = webhook_endpoint_id("default", "orders")
GITHUB = webhook_endpoint_id("default", "pushes")
PAUSED = webhook_endpoint_id("default", "paused")
NOSECRET = webhook_endpoint_id("default", "nosecret")


def docs() -> list[dict]:
    return [
        {"kind": "Task", "metadata": {"name": "tmpl", "labels": {"team": "ops"}},
         "spec": {"system": "sys", "mode": "template", "input": {"fixed": "1"}}},
        {"kind": "Secret", "metadata": {"name": "hook-secret"}, "spec": {"stringData": {"b": "ignored",
                                                                                        "a": SECRET.decode()}}},
        {"kind": "Secret", "metadata": {"name": "gh-secret"}, "spec": {"stringData": {"token": GH_SECRET.decode()}}},
        {"kind": "TaskWebhook", "metadata": {"name": "orders"},
         "spec": {"task_ref": "tmpl", "auth": {"secret_ref": "hook-secret"}}},
        {"kind": "TaskWebhook", "metadata": {"name": "pushes"},
         "spec": {"task_ref": "tmpl", "auth": {"profile": "github", "secret_ref": "gh-secret"},
                  "payload": {"input_key": "event"}}},
        {"kind": "TaskWebhook", "metadata": {"name": "paused"},
         "spec": {"task_ref": "tmpl", "suspend": True, "auth": {"secret_ref": "hook-secret"}}},
        {"kind": "TaskWebhook", "metadata": {"name": "nosecret"},
         "spec": {"task_ref": "tmpl", "auth": {"secret_ref": "missing"}}},
    ]


async def fill(store) -> None:
    for doc in docs():
        await store.create(normalize(doc))


def generic_headers(body: bytes, event_id: str, *, ts: str | None = None, secret: bytes = SECRET) -> dict:
    ts = ts or str(int(time.time()))
    sig = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={sig}", "X-Timestamp": ts, "X-Event-Id": event_id,
            "Content-Type": "application/json"}


def github_headers(body: bytes, delivery: str, secret: bytes = GH_SECRET) -> dict:
    sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={sig}", "X-GitHub-Delivery": delivery, "X-GitHub-Event": "push"}


@pytest.fixture(scope="module")
def api():
    store = MemoryStore()
    asyncio.run(fill(store))
    with LiveServer(create_app(store)) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            yield http


def tasks(api) -> list[dict]:
    return [t for t in api.get("/v1/tasks").json()["items"] if t["spec"]["mode"] == "run"]


def hook_status(api, name: str) -> dict:
    return api.get(f"/v1/task-webhooks/{name}").json()["status"]


def deliver(api, endpoint: str, body: bytes, headers: dict) -> httpx.Response:
    return api.post(f"/v1/webhook-deliveries/{endpoint}", content=body, headers=headers)


def test_the_endpoint_path_is_in_the_webhook_status(api):
    st = hook_status(api, "orders")
    assert st["endpointID"] == GENERIC and st["endpointPath"] == f"/v1/webhook-deliveries/{GENERIC}"


def test_a_signed_generic_delivery_creates_the_run_task_with_the_payload(api):
    body = json.dumps({"order": 42, "note": "ünïcode"}).encode()
    r = deliver(api, GENERIC, body, generic_headers(body, "evt-1"))
    assert r.status_code == 202, r.text
    name = f"orders-{short_hex('evt-1')}"
    assert r.json() == {"accepted": True, "duplicate": False, "event_id": "evt-1", "task": f"default/{name}",
                        "message": "delivery accepted"}
    task = api.get(f"/v1/tasks/{name}").json()
    assert task["spec"]["mode"] == "run" and task["status"]["phase"] == "Pending"
    inputs = task["spec"]["input"]
    assert inputs["fixed"] == "1" and json.loads(inputs["webhook_payload"]) == {"order": 42, "note": "ünïcode"}
    assert inputs["webhook_event_id"] == "evt-1" and inputs["webhook_source"] == "generic"
    assert datetime.fromisoformat(inputs["webhook_received_at"].replace("Z", "+00:00"))
    assert task["metadata"]["labels"] == {"team": "ops", WEBHOOK_LABEL: "orders", WEBHOOK_NAMESPACE_LABEL: "default",
                                          EVENT_ID_LABEL: short_hex("evt-1")}
    st = hook_status(api, "orders")
    assert st["acceptedCount"] >= 1 and st["phase"] == "Ready" and st["lastTriggeredTask"] == f"default/{name}"


def test_a_replayed_delivery_is_a_duplicate_and_creates_nothing(api):
    body = b'{"order": 7}'
    first = deliver(api, GENERIC, body, generic_headers(body, "evt-replay"))
    before = len(tasks(api))
    again = deliver(api, GENERIC, body, generic_headers(body, "evt-replay"))
    assert first.status_code == again.status_code == 202
    assert again.json()["duplicate"] is True and again.json()["message"] == "duplicate delivery"
    assert again.json()["task"] == first.json()["task"]
    assert len(tasks(api)) == before
    assert hook_status(api, "orders")["duplicateCount"] >= 1


@pytest.mark.parametrize("mutate,status,code,fragment", [
    (lambda h: h.update({"X-Signature": "sha256=" + "0" * 64}), 401, "webhook.signature_invalid", "mismatch"),
    (lambda h: h.update({"X-Signature": h["X-Signature"][7:]}), 401, "webhook.signature_invalid", "prefix"),
    (lambda h: h.pop("X-Signature"), 401, "webhook.signature_invalid", "missing signature header"),
    (lambda h: h.update({"X-Signature": "sha256=zz"}), 401, "webhook.signature_invalid", "hex"),
    (lambda h: h.pop("X-Timestamp"), 401, "webhook.signature_invalid", "missing timestamp header"),
    (lambda h: h.update({"X-Timestamp": "9" * 40}), 401, "webhook.signature_invalid", "timestamp out of range"),
    (lambda h: h.update({"X-Timestamp": "-" + "9" * 15}), 401, "webhook.signature_invalid", "timestamp out of range"),
    (lambda h: h.pop("X-Event-Id"), 400, "webhook.missing_event_id", "X-Event-Id"),
])
def test_bad_deliveries_get_clean_errors_and_create_nothing(api, mutate, status, code, fragment):
    body = b'{"bad": true}'
    headers = generic_headers(body, f"evt-bad-{status}-{fragment}")
    mutate(headers)
    before, rejected = len(tasks(api)), hook_status(api, "orders").get("rejectedCount", 0)
    r = deliver(api, GENERIC, body, headers)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code and fragment in err["message"]
    assert SECRET.decode() not in r.text
    assert len(tasks(api)) == before
    st = hook_status(api, "orders")
    assert st["rejectedCount"] == rejected + 1 and st["phase"] == "Error"


def test_a_tampered_body_fails_the_signature(api):
    headers = generic_headers(b'{"amount": 1}', "evt-tamper")
    r = deliver(api, GENERIC, b'{"amount": 1000}', headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "webhook.signature_invalid"


@pytest.mark.parametrize("offset_s", [-301, 301])
def test_stale_or_future_timestamps_are_refused(api, offset_s):
    body = b"{}"
    headers = generic_headers(body, f"evt-stale{offset_s}", ts=str(int(time.time()) + offset_s))
    r = deliver(api, GENERIC, body, headers)
    assert r.status_code == 401 and "timestamp outside allowed skew" in r.json()["error"]["message"]


def test_timestamps_in_milliseconds_and_rfc3339_are_accepted(api):
    body = b"{}"
    ms = str(int(time.time() * 1000))
    assert deliver(api, GENERIC, body, generic_headers(body, "evt-ms", ts=ms)).status_code == 202
    iso = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    assert deliver(api, GENERIC, body, generic_headers(body, "evt-iso", ts=iso)).status_code == 202


def test_oversized_bodies_are_refused_before_anything_is_created(api):
    body = b"x" * ((1 << 20) + 1)
    before = len(tasks(api))
    r = deliver(api, GENERIC, body, generic_headers(body, "evt-big"))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    def chunks():  # no Content-Length: the limit holds on the bytes actually read
        for _ in range(17):
            yield b"y" * 65536

    r = api.post(f"/v1/webhook-deliveries/{GENERIC}", content=chunks(), headers=generic_headers(b"", "evt-big2"))
    assert r.status_code == 413
    assert len(tasks(api)) == before


def test_unknown_endpoint_suspended_webhook_and_missing_secret(api):
    body = b"{}"
    r = deliver(api, "0" * 24, body, generic_headers(body, "evt-x"))
    assert r.status_code == 404 and r.json()["error"]["message"] == "webhook endpoint not found"
    r = deliver(api, PAUSED, body, generic_headers(body, "evt-x"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "webhook.suspended"
    r = deliver(api, NOSECRET, body, generic_headers(body, "evt-x"))
    assert r.status_code == 400 and r.json()["error"]["message"] == "webhook secret resolution failed"
    assert hook_status(api, "nosecret")["lastError"].startswith('secret "default/missing" not found')


def test_a_github_delivery(api):
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    r = deliver(api, GITHUB, body, github_headers(body, "72d3162e-cc78-11e3-81ab-4c9367dc0958"))
    assert r.status_code == 202, r.text
    task = api.get(f"/v1/tasks/{r.json()['task'].split('/')[1]}").json()
    assert task["spec"]["input"]["event"] == body.decode() and task["spec"]["input"]["webhook_source"] == "github"
    r = deliver(api, GITHUB, body, github_headers(body, "other-delivery", secret=b"wrong"))
    assert r.status_code == 401


def test_secrets_stay_out_of_events_and_status(api):
    body = b'{"z": 1}'
    deliver(api, GENERIC, body, generic_headers(body, "evt-secret-check"))
    text = ""
    with api.stream("GET", "/v1/events/watch", params={"since": 0}, timeout=5) as stream:
        deadline = time.monotonic() + 5
        for chunk in stream.iter_text():  # the whole backlog, up to this test's own delivery
            text += chunk
            if "evt-secret-check" in text and "taskwebhook.delivery.accepted" in text.split("evt-secret-check", 1)[1] \
                    or time.monotonic() > deadline:
                break
    assert "taskwebhook.delivery.accepted" in text
    assert SECRET.decode() not in text and GH_SECRET.decode() not in text
    assert SECRET.decode() not in json.dumps(hook_status(api, "orders"))


def test_deliveries_need_a_signature_not_a_token_when_auth_is_on():
    store = MemoryStore()
    asyncio.run(fill(store))
    auth = Authenticator.from_config(ServerConfig(auth_mode="token", api_tokens="t0k:admin"))
    with LiveServer(create_app(store, auth=auth)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        body = b"{}"
        assert deliver(http, GENERIC, body, generic_headers(body, "evt-auth")).status_code == 202
        bad = generic_headers(body, "evt-auth-2", secret=b"nope")
        assert deliver(http, GENERIC, body, bad).status_code == 401
        assert http.get("/v1/tasks").status_code == 401  # everything else still wants a token


# ------------------------------------------------------------------- dedupe, in-process


class FakeClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def signed_now(clock: FakeClock, body: bytes, event_id: str) -> dict:
    return {k.lower(): v for k, v in generic_headers(body, event_id, ts=str(int(clock.now.timestamp()))).items()}


def body_of(data: bytes):
    async def read() -> bytes:
        return data
    return read


async def test_dedupe_is_shared_through_the_store_and_a_race_makes_one_task():
    store = MemoryStore()
    await fill(store)
    clock = FakeClock(datetime.now(timezone.utc))
    replicas = [Deliveries(store, clock=clock), Deliveries(store, clock=clock)]  # two API replicas, one store
    body = b'{"race": 1}'
    headers = signed_now(clock, body, "evt-race")
    results = await asyncio.gather(*(r.handle(GENERIC, headers, body_of(body)) for r in replicas))
    assert sorted(r.duplicate for r in results) == [False, True]
    assert results[0].task == results[1].task
    runs = [t for t in (await store.list("Task")).items if t["spec"]["mode"] == "run"]
    assert len(runs) == 1
    (rec,) = (await store.list(DEDUPE_KIND, None)).items
    assert rec["spec"]["eventID"] == "evt-race" and rec["spec"]["task"] == results[0].task


async def test_the_loser_of_a_race_gets_the_winners_task():
    """Both replicas passed the lookup before either recorded: the store's create decides."""
    store = MemoryStore()
    await fill(store)
    hook = await store.get("TaskWebhook", "default", "orders")
    now = datetime.now(timezone.utc)
    a = await create_run_task(store, hook, "evt-tie", b"{}", now)
    b = await create_run_task(store, hook, "evt-tie", b"{}", now)  # finds the same task, no conflict error
    assert a == b
    book = DedupeBook(store)
    assert await book.record(GENERIC, "evt-tie", a, now + timedelta(hours=1)) is None
    assert await book.record(GENERIC, "evt-tie", "default/someone-else", now + timedelta(hours=1)) == a
    assert await book.lookup(GENERIC, "evt-tie", now) == a


async def test_the_dedupe_window_expires():
    store = MemoryStore()
    await fill(store)
    clock = FakeClock(datetime.now(timezone.utc))
    deliveries = Deliveries(store, clock=clock)
    body = b"{}"
    first = await deliveries.handle(GENERIC, signed_now(clock, body, "evt-window"), body_of(body))
    clock.now += timedelta(seconds=86399)
    again = await deliveries.handle(GENERIC, signed_now(clock, body, "evt-window"), body_of(body))
    assert not first.duplicate and again.duplicate
    clock.now += timedelta(seconds=2)  # past the 24 h window: accepted again, and it maps to the same run task
    later = await deliveries.handle(GENERIC, signed_now(clock, body, "evt-window"), body_of(body))
    assert not later.duplicate and later.task == first.task
    # expired records are pruned (at most once a minute)
    other = await deliveries.handle(GENERIC, signed_now(clock, body, "evt-other"), body_of(body))
    clock.now += timedelta(days=2)
    await deliveries.handle(GENERIC, signed_now(clock, body, "evt-new"), body_of(body))
    names = {r["spec"]["eventID"] for r in (await store.list(DEDUPE_KIND, None)).items}
    assert names == {"evt-new"} and other.task


def test_timestamp_parsing():
    assert parse_timestamp("1700000000") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert parse_timestamp("1700000000123").timestamp() == pytest.approx(1700000000.123)
    assert parse_timestamp("2023-11-14T22:13:20.5Z").microsecond == 500000
    for bad in ("", "yesterday", "2023-11-14T22:13:20"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


async def test_a_foreign_task_with_the_run_name_is_a_creation_error():
    store = MemoryStore()
    await fill(store)
    taken = f"orders-{short_hex('evt-taken')}"
    await store.create(normalize({"kind": "Task", "metadata": {"name": taken}, "spec": {"system": "s"}}))
    clock = FakeClock(datetime.now(timezone.utc))
    with pytest.raises(Exception) as err:
        await Deliveries(store, clock=clock).handle(GENERIC, signed_now(clock, b"{}", "evt-taken"), body_of(b"{}"))
    assert err.value.status == 400 and err.value.code == "webhook.task_creation_failed"
    assert "name conflict" in err.value.message
    assert (await store.list(DEDUPE_KIND, None)).items == []
