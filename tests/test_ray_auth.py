"""``orloj up --host 0.0.0.0`` says when Ray's own token auth is off: the API's tokens protect
the API, not Ray's ports, and whoever reaches those can run code on the cluster."""

from __future__ import annotations

from tests_support import free_port
from test_cli import FAKE_CLUSTER_UP, orloj

from orloj_ray.config import ray_auth_warning


def test_the_warning_is_for_an_api_beyond_loopback_with_ray_auth_off():
    for host in ("127.0.0.1", "localhost", "::1"):
        assert ray_auth_warning(host, {"RAY_AUTH_MODE": "disabled"}) == ""
    warning = ray_auth_warning("0.0.0.0", {"RAY_AUTH_MODE": "disabled"})
    assert "RAY_AUTH_MODE=disabled" in warning and "can run any code" in warning and "RAY_AUTH_MODE=token" in warning
    assert "RAY_AUTH_MODE=unset" in ray_auth_warning("10.0.0.5", {})
    assert ray_auth_warning("0.0.0.0", {"RAY_AUTH_MODE": "token"}) == ""


def test_orloj_up_on_all_interfaces_warns_unless_ray_auth_is_on(tmp_path):
    pkg = tmp_path / "work" / "cluster"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "up.py").write_text(FAKE_CLUSTER_UP)
    env = {"ORLOJ_HOME": str(tmp_path / "home"), "FAKE_UP_FAIL": "1"}  # the stand-in exits at once
    res = orloj("up", "--detach", "--host", "0.0.0.0", "--port", str(free_port()), env=env, cwd=tmp_path / "work")
    assert "warning: the API binds 0.0.0.0, but Ray's token authentication is off" in res.stderr
    res = orloj("up", "--detach", "--host", "0.0.0.0", "--port", str(free_port()),
                env={**env, "RAY_AUTH_MODE": "token"}, cwd=tmp_path / "work")
    assert "Ray's token authentication is off" not in res.stderr
    res = orloj("up", "--detach", "--port", str(free_port()), env=env, cwd=tmp_path / "work")
    assert "Ray's token authentication is off" not in res.stderr  # loopback: nothing to say
