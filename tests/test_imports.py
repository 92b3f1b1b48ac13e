"""The four top-level packages import the same way everywhere users run them (README: Layout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

MODULES = ["orloj_ray.engine.executor", "actors.supervisor", "serve.deployment", "cluster.local", "orloj_ray.cli.main"]
PROBE = (
    "import importlib, json, sys; "
    f"mods = {MODULES!r}; "
    "print(json.dumps({m: importlib.import_module(m).__file__ for m in mods}))"
)


def _import_files(cwd: Path, extra_path: str | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    if extra_path:
        env["PYTHONPATH"] = extra_path
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_imports_from_the_repository_root():
    files = _import_files(REPO)
    assert all(Path(f).is_relative_to(REPO) for f in files.values()), files


def test_imports_from_an_installed_editable_elsewhere(tmp_path):
    files = _import_files(tmp_path)
    assert all(Path(f).is_relative_to(REPO) for f in files.values()), files


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """A non-editable install of the wheel into its own target folder."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out / "dist"), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next((out / "dist").glob("orloj_ray-*.whl"))
    site = out / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return site


@pytest.mark.slow
def test_imports_from_a_wheel(wheel_site, tmp_path):
    files = _import_files(tmp_path, str(wheel_site))
    assert all(Path(f).is_relative_to(wheel_site) for f in files.values()), files


@pytest.mark.slow
def test_wheel_installed_and_repository_root_on_sys_path_do_not_mix(wheel_site):
    """The trap of package-dir mappings: the source tree first on sys.path must still import whole."""
    files = _import_files(REPO, str(wheel_site))
    assert all(Path(f).is_relative_to(REPO) for f in files.values()), files


@pytest.mark.slow
def test_imports_inside_ray_workers(ray_cluster):
    import ray

    @ray.remote(num_cpus=0)
    def probe() -> dict:
        import importlib

        return {m: importlib.import_module(m).__file__ for m in MODULES}

    files = ray.get(probe.remote(), timeout=60)
    assert set(files) == set(MODULES)


@pytest.mark.slow
def test_the_wheel_ships_the_web_console(wheel_site):
    shipped = {p.name for p in (wheel_site / "serve" / "ui").iterdir()}
    assert shipped == {p.name for p in (REPO / "serve" / "ui").iterdir() if p.is_file()}


def test_an_idle_agent_actor_loads_no_turn_machinery():
    """Every idle agent actor is a process: what its module imports, each one holds (README: Agent actors).

    The turn machinery (gateway, tools, store, pydantic models) loads on the first turn.
    """
    probe = ("import sys, ray; before = set(sys.modules); import actors.agent_actor; "
             "print(' '.join(sorted(m for m in sys.modules if m not in before)))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split()
    heavy = [m for m in loaded if m.split(".")[0] in {"pydantic", "httpx", "yaml", "fastapi"}
             or m.startswith(("orloj_ray.store", "orloj_ray.gateway", "orloj_ray.resources", "orloj_ray.tools"))]
    assert not heavy, f"actors.agent_actor now imports {heavy}; import them on the first turn instead"
