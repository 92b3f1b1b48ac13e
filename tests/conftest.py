"""Shared fixtures: one Ray cluster and one deployed orloj-ray control plane per test session.

Starting Ray costs seconds and every actor is a process, so the whole suite shares one
cluster (its own temp dir, dashboard off) and one Serve deployment on a free loopback port.

A module marked ``pytestmark = pytest.mark.own_process`` (it starts a Ray cluster of its own,
or needs none on the machine) runs in a pytest process of its own, before everything else:
the suite runs in any order and by any file selection, with no module relying on its name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests_support import free_port

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO / "tests" / "conformance"  # a copy of shared/conformance: the suite needs nothing outside
UPSTREAM_EXAMPLES = CONFORMANCE / "upstream-examples"
GOLDEN = CONFORMANCE / "upstream-examples-normalized.jsonl"


@pytest.fixture(scope="session", autouse=True)
def orloj_home(tmp_path_factory):
    """``$ORLOJ_HOME`` of this session (and of the Ray it starts): never the user's ``~/.orloj``,
    where a PostgreSQL store without a configured key would write its secret key file."""
    previous = os.environ.get("ORLOJ_HOME")
    if previous is None:
        os.environ["ORLOJ_HOME"] = str(tmp_path_factory.mktemp("orloj-home"))
    yield Path(os.environ["ORLOJ_HOME"])
    if previous is None:
        os.environ.pop("ORLOJ_HOME", None)


@pytest.fixture(scope="session")
def bubblewrap(tmp_path_factory) -> Path:
    """The directory of a usable ``bwrap``: the machine's, else Debian's ``bubblewrap`` package
    fetched with apt and unpacked for this session only (nothing is installed on the machine,
    so other checkouts sharing it are not affected). Put it first on PATH to sandbox with it."""
    found = shutil.which("bwrap")
    if found is None:
        folder = tmp_path_factory.mktemp("bubblewrap")
        try:
            subprocess.run(["apt-get", "download", "bubblewrap"], cwd=folder, check=True, capture_output=True,
                           timeout=120)
            package = next(folder.glob("bubblewrap_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(package), str(folder / "root")], check=True, capture_output=True,
                           timeout=60)
        except (OSError, subprocess.SubprocessError, StopIteration) as exc:
            pytest.fail(f"bubblewrap is not installed and could not be fetched with apt ({exc}): "
                        "install it (apt-get install bubblewrap) to run the sandbox tests")
        found = str(folder / "root" / "usr" / "bin" / "bwrap")
    probe = subprocess.run([found, "--ro-bind", "/", "/", "--unshare-all", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail(f"bwrap cannot create a sandbox on this machine: {probe.stderr.decode(errors='replace')}")
    return Path(found).parent


@pytest.fixture(scope="session")
def pg_url():
    """URL of a fresh PostgreSQL database for this test session, dropped at the end.

    The machine's server on 127.0.0.1:5432 when it answers, else a throwaway server on a free
    loopback port (tests/pg_server.py), stopped at the end.
    """
    from pg_server import find_or_start

    server = find_or_start()
    try:
        url = server.create_database()
        try:
            yield url
        finally:
            server.drop_database(url)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A Ray head in this process, shared by every test that needs Ray."""
    from cluster.ray_env import apply_local_env

    apply_local_env()
    import ray

    temp_dir = tmp_path_factory.mktemp("ray")
    info = ray.init(num_cpus=2, include_dashboard=False, namespace="orloj", logging_level="warning",
                    log_to_driver=False, _temp_dir=str(temp_dir), _node_ip_address="127.0.0.1")
    yield info
    ray.shutdown()


@pytest.fixture(scope="session")
def orloj_api(ray_cluster):
    """URL of the orloj-ray API served by Ray Serve on the shared cluster."""
    import ray
    from ray import serve

    from cluster.local import deploy, undeploy

    port = free_port()
    from orloj_ray.config import ServerConfig

    # tools in tests run on loopback: allowed the way an operator would (--tool-allowed-networks)
    url = deploy(host="127.0.0.1", port=port,
                 cluster={"ray_address": ray_cluster.address_info.get("gcs_address", ""), "store": "memory",
                          "log": "memory", "mode": "message-driven"},
                 config=ServerConfig.from_env(mode="message-driven", tool_allowed_networks="127.0.0.0/8"))
    yield url
    if ray.is_initialized():  # a multi-node module may have shut the shared cluster down already
        undeploy()
        serve.shutdown()


@pytest.fixture
def cli_env(orloj_api):
    """Environment for running the `orloj` CLI as a subprocess against the shared API."""
    env = dict(os.environ)
    env["ORLOJ_SERVER"] = orloj_api
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


OWN_PROCESS_CHILD = "ORLOJ_TEST_OWN_PROCESS"
"""Set in a child pytest process started for an ``own_process`` module."""


def pytest_configure(config):
    config.addinivalue_line("markers", "own_process: runs in a pytest process of its own, before the rest of the "
                                       "suite (it starts a Ray cluster of its own, or needs none on the machine)")


class OwnProcessModule(pytest.Item):
    """The selected tests of one ``own_process`` module, run by ``python -m pytest`` in a child."""

    def __init__(self, *, node_ids: list[str], **kwargs):
        super().__init__(**kwargs)
        self.node_ids = node_ids
        self.output = ""

    def runtest(self) -> None:
        env = {**os.environ, OWN_PROCESS_CHILD: "1"}
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                              *self.node_ids], cwd=REPO, env=env, capture_output=True, text=True, timeout=3000)
        self.output = res.stdout + res.stderr
        lines = [line for line in res.stdout.splitlines() if line.strip()]
        if lines:
            self.add_report_section("call", "summary", lines[-1])
        if res.returncode != 0:
            raise OwnProcessFailed(self.output)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, OwnProcessFailed):
            return f"the module's own pytest process failed:\n{excinfo.value.args[0][-12000:]}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.name} (own process: {len(self.node_ids)} tests)"


class OwnProcessFailed(Exception):
    pass


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Each ``own_process`` module becomes one item that runs it in a child process, placed first."""
    if os.environ.get(OWN_PROCESS_CHILD):
        return
    modules: dict[Path, list[pytest.Item]] = {}
    rest = []
    for item in items:
        if item.get_closest_marker("own_process"):
            modules.setdefault(Path(item.path), []).append(item)
        else:
            rest.append(item)
    own = [OwnProcessModule.from_parent(selected[0].getparent(pytest.Module), name=path.stem,
                                        node_ids=[i.nodeid for i in selected])
           for path, selected in sorted(modules.items())]
    items[:] = own + rest
