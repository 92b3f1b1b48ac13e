"""The SSRF guard: what a tool may reach, and how only the operator widens it."""

from __future__ import annotations

import ipaddress

import pytest

from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.tools import EgressGuard, HttpToolRunner, ToolCallContext, ToolError
from orloj_ray.tools.egress import classify

CTX = ToolCallContext("default", "t", "a", "k")


@pytest.mark.parametrize("url,reason", [
    ("http://127.0.0.1:8080/x", "loopback"),
    ("http://127.8.9.10/x", "loopback"),
    ("http://10.1.2.3/x", "private"),
    ("http://172.16.0.1/x", "private"),
    ("http://192.168.1.1/x", "private"),
    ("http://100.64.0.1/x", "carrier-grade NAT"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://169.254.10.10/", "link-local"),
    ("http://0.0.0.0:80/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[::1]:8080/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped loopback"),
    ("http://[::ffff:169.254.169.254]/", "IPv4-mapped cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[::]/", "unspecified"),
    ("http://[2002:a00:1::]/", "6to4 private"),
    ("http://[64:ff9b::7f00:1]/", "NAT64 loopback"),
    ("http://localhost:9/x", "loopback"),
])
async def test_refused_by_default(url, reason):
    with pytest.raises(ToolError) as err:
        await EgressGuard().check(url, tool="probe")
    assert err.value.code == "tool_egress_denied"
    assert reason in err.value.message
    # the message names the host and the operator's fix
    assert "orloj up --tool-allowed-networks" in err.value.message and "ORLOJ_TOOL_ALLOWED_NETWORKS" in err.value.message
    assert 'tool "probe"' in err.value.message


async def test_hostname_is_resolved_and_named():
    with pytest.raises(ToolError) as err:
        await EgressGuard().check("http://localhost:1234/x", tool="t")
    assert "localhost (127.0.0.1)" in err.value.message or "localhost (::1)" in err.value.message


async def test_allowed_network_lets_loopback_through_and_pins_the_address():
    guard = EgressGuard(["127.0.0.0/8"])
    target = await guard.check("http://127.0.0.1:8080/path?q=1", tool="t")
    assert target.url == "http://127.0.0.1:8080/path?q=1" and target.ip == "127.0.0.1"
    mapped = await guard.check("http://[::ffff:127.0.0.1]:81/", tool="t")
    assert ipaddress.ip_address(mapped.ip).ipv4_mapped == ipaddress.ip_address("127.0.0.1")
    # a name is resolved; only an address that passed is connected to (localhost may also
    # have ::1, which 127.0.0.0/8 does not cover: it is never used)
    target = await guard.check("http://localhost:8080/x", tool="t")
    assert target.host == "localhost" and target.host_header == "localhost:8080"
    assert target.ip == "127.0.0.1" and target.url == "http://127.0.0.1:8080/x"
    six = await EgressGuard(["::1/128"]).check("http://[::1]:8080/x", tool="t")
    assert six.url == "http://[::1]:8080/x"
    with pytest.raises(ToolError):  # other private ranges stay closed
        await guard.check("http://10.0.0.1/", tool="t")


async def test_metadata_needs_an_exact_allowance():
    with pytest.raises(ToolError) as err:
        await EgressGuard(["169.254.0.0/16", "0.0.0.0/0"]).check("http://169.254.169.254/", tool="t")
    assert "cloud metadata" in err.value.message
    await EgressGuard(["169.254.169.254/32"]).check("http://169.254.169.254/", tool="t")


async def test_public_addresses_pass_and_bad_schemes_do_not():
    target = await EgressGuard().check("https://93.184.215.14/x", tool="t")
    assert target.ip == "93.184.215.14" and target.scheme == "https"
    for url in ("file:///etc/passwd", "gopher://1.1.1.1/", "ftp://1.1.1.1/"):
        with pytest.raises(ToolError) as err:
            await EgressGuard().check(url, tool="t")
        assert err.value.code == "runtime_policy_invalid"


def test_classify_public():
    assert classify(ipaddress.ip_address("8.8.8.8")) == ""
    assert classify(ipaddress.ip_address("2606:4700:4700::1111")) == ""


async def test_manifest_cannot_lift_the_guard():
    # nothing in the Tool resource is read by the guard; only the runner's operator config counts
    tool = {"metadata": {"name": "t"}, "spec": {"type": "http", "endpoint": "http://127.0.0.1:9/x",
                                                "allowed_networks": ["127.0.0.0/8"],
                                                "runtime": {"allowed_networks": "127.0.0.0/8"}}}
    with pytest.raises(ToolError) as err:
        await HttpToolRunner().call(tool, "{}", CTX)
    assert err.value.code == "tool_egress_denied"


def test_operator_config_validates_networks():
    assert ServerConfig.from_env({"ORLOJ_TOOL_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128"}).tool_allowed_networks == (
        "127.0.0.0/8", "::1/128")
    with pytest.raises(ConfigError) as err:
        ServerConfig(tool_allowed_networks=("not-a-cidr",))
    assert "--tool-allowed-networks" in str(err.value)
