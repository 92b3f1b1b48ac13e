"""The web console in a real browser (Debian's chromium driven by Playwright) against the
suite's Ray Serve deployment: every page loads without a console error, a task is watched
from Pending to Succeeded without a reload (its agents' model output shown while they write
it), an approval is approved from the page; and token mode (the app on uvicorn) asks for a
token and offers only what the role may do."""

from __future__ import annotations

import asyncio
import glob
from pathlib import Path

import httpx
import pytest
import yaml

from console_support import ConsoleErrors, browser, loaded, uvicorn_app
from governance_support import EXAMPLES, ToolServer
from orloj_ray.config import ServerConfig
from orloj_ray.resources import kind_info
from orloj_ray.resources.kinds import KINDS
from orloj_ray.store import MemoryStore
from serve.app import create_app
from serve.auth import Authenticator
from tests_support import BLUEPRINTS, wait_for_phase

pytestmark = pytest.mark.slow
NS = "console"


def _post(http: httpx.Client, doc: dict, ns: str) -> dict:
    doc = dict(doc)
    doc["metadata"] = {**doc["metadata"], "namespace": ns}
    resp = http.post(f"/v1/{kind_info(doc['kind']).plural}", json=doc)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _pipeline(http: httpx.Client, ns: str, *, latency_ms: int = 0) -> None:
    """The pipeline blueprint (agents, system) on a mock model; each reply takes ``latency_ms``."""
    for path in sorted(glob.glob(str(BLUEPRINTS / "pipeline" / "**" / "*.yaml"), recursive=True)):
        doc = yaml.safe_load(Path(path).read_text())
        if doc["kind"] != "Task":
            _post(http, doc, ns)
    options = {"latency_ms": str(latency_ms)} if latency_ms else {}
    _post(http, {"apiVersion": "orloj.dev/v1", "kind": "ModelEndpoint", "metadata": {"name": "openai-default"},
                 "spec": {"provider": "mock", "default_model": "gpt-4o", "options": options}}, ns)


def _task(name: str, **spec) -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name},
            "spec": {"system": "bp-pipeline-system", "input": {"topic": "edge AI chips"}, **spec}}


@pytest.fixture(scope="module")
def seeded(orloj_api):
    """A namespace with the pipeline blueprint and one finished task."""
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        _pipeline(http, NS)
        _post(http, _task("seed"), NS)
        done = wait_for_phase(http, "tasks", "seed", NS)
        assert done["status"]["phase"] == "Succeeded", done["status"].get("lastError")
    return orloj_api


def test_every_page_loads_without_console_errors(seeded):
    routes = ["#/", "#/agents-runtime", "#/approvals", "#/audit", "#/audit?decision=denied",
              *(f"#/k/{k.plural}" for k in KINDS), "#/k/agents/new",
              f"#/k/agents/bp-pipeline-planner-agent?ns={NS}", f"#/k/agent-systems/bp-pipeline-system?ns={NS}",
              *(f"#/tasks/seed?ns={NS}&tab={tab}" for tab in ("graph", "trace", "messages", "logs", "output", "yaml"))]
    with browser() as b:
        page = b.new_page()
        errors = ConsoleErrors(page)
        page.goto(f"{seeded}/ui/")
        for route in routes:
            page.goto(f"{seeded}/ui/{route}")
            loaded(page)
            assert not page.locator("main .error").count(), (route, page.inner_text("main")[:500])
            assert not errors.list, (route, errors.list)
        # the finished task's page shows what happened
        page.goto(f"{seeded}/ui/#/tasks/seed?ns={NS}&tab=graph")
        loaded(page)
        assert page.locator('[data-node="bp-pipeline-writer-agent"][data-state="succeeded"]').count() == 1
        page.click('button[data-tab="trace"]')
        assert page.locator(".wf-row").count() == 3  # one bar per agent turn
        assert page.locator(".wf-row .wf-call.model_call").count() >= 3
        page.click('button[data-tab="messages"]')
        assert page.locator("tr[data-message]").count() == 3
        page.click('button[data-tab="output"]')
        assert page.locator("pre.output").inner_text().strip()
        # every kind's list page shows its objects with a badge
        page.goto(f"{seeded}/ui/#/k/agents")
        loaded(page)
        assert page.locator(f'tr[data-name="bp-pipeline-writer-agent"][data-ns="{NS}"] .badge').count() == 1
        assert not errors.list, errors.list


def test_a_task_is_watched_from_pending_to_succeeded_without_reload(seeded):
    slow = f"{NS}-slow"
    with httpx.Client(base_url=seeded, timeout=30) as http, browser() as b:
        _pipeline(http, slow, latency_ms=700)
        created = _post(http, _task("watched", mode="template"), slow)  # a template stays Pending
        page = b.new_page()
        errors = ConsoleErrors(page)
        page.goto(f"{seeded}/ui/#/tasks/watched?ns={slow}&tab=graph")
        loaded(page)
        page.wait_for_selector("#task-phase [data-phase='Pending']")
        page.wait_for_selector("text=● live")
        page.evaluate("""() => { window.__phases = []; window.__loads = performance.getEntriesByType('navigation').length;
            new MutationObserver(() => { const b = document.querySelector('#task-phase .badge');
              if (b && window.__phases[window.__phases.length - 1] !== b.dataset.phase) window.__phases.push(b.dataset.phase); })
              .observe(document.getElementById('main'), {subtree: true, childList: true}); }""")
        doc = {**created, "spec": {**created["spec"], "mode": "run"}}
        doc.pop("status", None)
        resp = http.put(f"/v1/tasks/watched", params={"namespace": slow}, json=doc,
                        headers={"If-Match": created["metadata"]["resourceVersion"]})
        assert resp.status_code == 200, resp.text
        page.wait_for_selector("#task-phase [data-phase='Succeeded']", timeout=60000)
        phases = page.evaluate("window.__phases")
        assert "Running" in phases and phases[-1] == "Succeeded", phases
        assert page.evaluate("window.__phases !== undefined")  # same document: never reloaded
        assert page.locator('[data-node][data-state="succeeded"]').count() == 3
        assert not errors.list, errors.list


def test_the_task_page_shows_the_model_output_while_the_agents_write_it(seeded):
    ns = f"{NS}-tokens"
    planner = "bp-pipeline-planner-agent"
    with httpx.Client(base_url=seeded, timeout=30) as http, browser() as b:
        _pipeline(http, ns, latency_ms=1500)  # each reply spread over 1.5 s, word by word
        created = _post(http, _task("streamed", mode="template"), ns)
        page = b.new_page()
        errors = ConsoleErrors(page)
        page.goto(f"{seeded}/ui/#/tasks/streamed?ns={ns}&tab=graph")
        loaded(page)
        page.wait_for_selector("text=● live")
        assert page.locator("section.live-output").is_hidden()  # nothing said yet
        page.evaluate("""(planner) => { window.__seen = [];
            new MutationObserver(() => { const b = document.querySelector(`.live-turn[data-agent="${planner}"]`);
              const phase = (document.querySelector('#task-phase .badge') || {}).dataset || {};
              if (b) window.__seen.push([phase.phase, b.classList.contains('running'),
                                         b.querySelector('.live-text').textContent.length]); })
              .observe(document.getElementById('main'), {subtree: true, childList: true, characterData: true}); }""",
                      planner)
        doc = {**created, "spec": {**created["spec"], "mode": "run"}}
        doc.pop("status", None)
        resp = http.put("/v1/tasks/streamed", params={"namespace": ns}, json=doc,
                        headers={"If-Match": created["metadata"]["resourceVersion"]})
        assert resp.status_code == 200, resp.text
        page.wait_for_selector("#task-phase [data-phase='Succeeded']", timeout=60000)
        page.wait_for_selector("section.live-output[data-ended='Succeeded']", timeout=10000)
        seen = page.evaluate("window.__seen")
        # the planner's words were on the page, growing, while its turn and the task were running
        growing = [n for phase, running, n in seen if running and phase == "Running" and n > 0]
        assert len(set(growing)) >= 3, seen[:20]
        task = http.get("/v1/tasks/streamed", params={"namespace": ns}).json()
        for row in (r for r in task["status"]["trace"] if r["type"] == "model_call"):
            block = page.locator(f'.live-turn[data-agent="{row["agent"]}"][data-step="{row["step"]}"]')
            assert block.get_attribute("class") == "live-turn done"
            assert block.locator(".live-text").text_content() == row["output"]  # the text recorded
        assert not errors.list, errors.list


def test_an_approval_is_approved_from_the_page(orloj_api):
    ns = f"{NS}-approval"
    with ToolServer().running() as server, httpx.Client(base_url=orloj_api, timeout=30) as http, browser() as b:
        for name in ("resources.yaml", "compliance-checker.yaml"):
            for doc in yaml.safe_load_all((EXAMPLES / name).read_text()):
                if doc and doc["kind"] == "Tool":
                    doc["spec"]["endpoint"] = f"{server.url}/{doc['metadata']['name']}"
                if doc:
                    _post(http, doc, ns)
        flag = next(d for d in yaml.safe_load_all((EXAMPLES / "tasks.yaml").read_text()) if d["metadata"]["name"] == "flag-q3")
        _post(http, flag, ns)
        waiting = wait_for_phase(http, "tasks", "flag-q3", ns, phases=("WaitingApproval", "Failed", "Succeeded"))
        assert waiting["status"]["phase"] == "WaitingApproval", waiting["status"].get("lastError")
        approval = waiting["status"]["pendingApproval"]
        page = b.new_page()
        errors = ConsoleErrors(page)
        page.goto(f"{orloj_api}/ui/#/approvals")
        loaded(page)
        row = page.locator(f'tr[data-approval="{approval}"]')
        assert "flag-issues" in row.inner_text() and "sha256:" in row.inner_text()  # the bound call
        page.fill("input[name=decided_by]", "dana")
        row.locator("button.approve").click()
        page.wait_for_selector(f'tr[data-approval="{approval}"] [data-phase="Approved"]', timeout=20000)
        done = wait_for_phase(http, "tasks", "flag-q3", ns)
        assert done["status"]["phase"] == "Succeeded", done["status"].get("lastError")
        assert server.paths() == ["/flag-issues"]
        stored = http.get(f"/v1/tool-approvals/{approval}", params={"namespace": ns}).json()
        assert stored["status"]["decided_by"] == "dana"
        page.goto(f"{orloj_api}/ui/#/audit?task=flag-q3&decision=approved")
        loaded(page)
        assert page.locator('tr[data-decision="approved"]').count() == 1
        assert not errors.list, errors.list


def test_token_mode_asks_for_a_token_and_shows_only_what_the_role_may_do():
    store = MemoryStore()
    asyncio.run(store.create({"apiVersion": "orloj.dev/v1", "kind": "ToolApproval",
                              "metadata": {"name": "ta-1", "namespace": "default"},
                              "spec": {"task_ref": "default/t", "tool": "flag-issues", "agent": "a"},
                              "status": {"phase": "Pending"}}))
    auth = Authenticator.from_config(ServerConfig(auth_mode="token", api_tokens="ro:r3ad-tok:reader,rw:wr1te-tok:writer"))
    with uvicorn_app(create_app(store, auth=auth)) as url, browser() as b:
        page = b.new_page()
        errors = ConsoleErrors(page)
        page.goto(f"{url}/ui/#/k/agents")
        page.wait_for_selector("form.login")
        page.fill("input[name=token]", "wrong")
        page.click("form.login button")
        page.wait_for_selector("text=That token is not valid.")
        page.fill("input[name=token]", "r3ad-tok")
        page.click("form.login button")
        page.wait_for_selector("text=ro · reader")
        page.goto(f"{url}/ui/#/k/agents")
        loaded(page)
        assert page.locator("text=New Agent").count() == 0
        page.goto(f"{url}/ui/#/approvals")
        loaded(page)
        assert page.locator("button.approve").count() == 0
        assert page.evaluate("sessionStorage.getItem('orloj.token')") == "r3ad-tok"
        page.click("text=sign out")
        page.wait_for_selector("form.login")
        page.fill("input[name=token]", "wr1te-tok")
        page.click("form.login button")
        page.wait_for_selector("text=rw · writer")
        page.goto(f"{url}/ui/#/approvals")
        loaded(page)
        assert page.locator('tr[data-approval="ta-1"] button.approve').count() == 1
        page.goto(f"{url}/ui/#/k/agents")
        loaded(page)
        assert page.locator("text=New Agent").count() == 1
        assert not errors.list, errors.list


def test_agents_page_shows_each_agents_ray_actors_with_a_link_to_the_ray_dashboard():
    """The fields the supervisor writes to an Agent's status (``actors``, ``lastTurnAt``,
    ``lastReclaim``, ``waiting``) are rendered when present; an agent without them still loads."""
    store = MemoryStore()
    node = "ab" * 28
    agent = {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "writer", "namespace": "default"},
             "spec": {"model_ref": "openai-default", "replicas": 2},
             "status": {"phase": "Ready", "lastTurnAt": "2026-01-01T00:00:00Z", "waiting": "all 2 actors busy",
                        "lastReclaim": {"at": "2026-01-01T00:00:00Z", "reason": "idle",
                                        "actor": "orloj:agent:default:writer#1"},
                        "actors": [{"name": "orloj:agent:default:writer", "actor_id": "c0ffee01", "node_id": node,
                                    "placement": "", "replica": 0, "inflight": 2},
                                   {"name": "orloj:agent:default:writer#1", "actor_id": "c0ffee02", "node_id": node,
                                    "placement": "region=eu-west", "replica": 1, "inflight": 1}]}}
    bare = {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "planner", "namespace": "default"},
            "spec": {"model_ref": "openai-default"}, "status": {"phase": "Ready"}}
    for doc in (agent, bare):
        asyncio.run(store.create(doc))

    async def runtime() -> dict:
        return {"ray": {"dashboard_url": "http://127.0.0.1:8265", "nodes": []}}

    with uvicorn_app(create_app(store, runtime_info=runtime)) as url, browser() as b:
        page = b.new_page()
        errors = ConsoleErrors(page)
        for route in ("#/agents-runtime", "#/k/agents/writer?ns=default"):
            page.goto(f"{url}/ui/{route}")
            loaded(page)
            card = page.locator('section[data-agent="writer"]')
            assert "mailbox depth 3" in card.inner_text() and "waiting: all 2 actors busy" in card.inner_text()
            assert "idle" in card.inner_text() and "replicas 2" in card.inner_text()
            link = card.locator('tr[data-actor="orloj:agent:default:writer#1"] a').first
            assert link.get_attribute("href") == "http://127.0.0.1:8265/#/actors/c0ffee02"
            assert f"node-{node[:12]}" in card.inner_text() and "region=eu-west" in card.inner_text()
        page.goto(f"{url}/ui/#/agents-runtime")
        loaded(page)
        assert "No live actor" in page.locator('section[data-agent="planner"]').inner_text()
        assert not errors.list, errors.list
