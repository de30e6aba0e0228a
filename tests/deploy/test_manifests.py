"""deploy/: the Dockerfile, docker-compose and Kubernetes files match the code.

No container engine or cluster runs here, so the files are checked against what the services
really read and serve: they parse, pass hadolint and the Kubernetes schemas, every command is
``metalbus serve <service>`` of a real service, every variable they set is a setting of that
service (and the settings build from it), and every probe and healthcheck points at a route
and port that service serves.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from metalbus.shared import subjects
from tests.deploy import services as svc
from tests.deploy.kustomize import Rendered, load_documents, pod_spec, render

DEPLOY = svc.REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "production")
LAYER2 = {"boot", "discovery"}
# Scalable services: more than one replica in production.
SCALED = {"api", "ipam", "compose", "power"}
K8S_VERSION = "1.30.0"
# What a fieldRef gives at run time, for building settings from the environment.
FIELD_REF_STAND_IN = {"status.podIP": "10.0.0.5", "status.hostIP": "10.0.0.5"}
NATS_CHART_REPO = "https://nats-io.github.io/k8s/helm/charts/"


# -- every file ---------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(files) >= 10
    for path in files:
        assert load_documents(path), f"{path} is empty"


# -- the image ----------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--config", str(DEPLOY / ".hadolint.yaml"), str(svc.DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_from_the_lock_and_runs_the_metalbus_command() -> None:
    steps = svc.dockerfile_instructions()
    stages = [rest for word, rest in steps if word == "FROM"]
    assert len(stages) == 2, "a build stage and a runtime stage"
    runtime = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "uv sync --locked --no-dev --all-packages --no-editable" in runs
    # The uv the lock pins.
    lock = tomllib.loads((svc.REPO / "uv.lock").read_text())
    uv = next(p["version"] for p in lock["package"] if p["name"] == "uv")
    assert f"uv=={uv}" in runs
    # Every workspace member's pyproject.toml is copied for the dependency layer.
    members = ["shared", *(f"services/{s}" for s in subjects.SERVICES)]
    copies = [rest for word, rest in steps if word == "COPY"]
    for member in members:
        assert f"{member}/pyproject.toml {member}/" in copies, member
        assert (svc.REPO / member / "pyproject.toml").exists()
    # The entry point is the metalbus console script, run as a non-root user.
    entrypoint = json.loads(next(rest for word, rest in runtime if word == "ENTRYPOINT"))
    scripts = tomllib.loads((svc.REPO / "shared" / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert entrypoint == ["metalbus"] and "metalbus" in scripts
    user = next(rest for word, rest in runtime if word == "USER")
    assert not user.startswith(("0", "root"))
    # The runtime libraries: libvirt0 for libvirt-python, ieee-data for discovery's vendors.
    runtime_runs = " ".join(rest for word, rest in runtime if word == "RUN")
    for package in ("libvirt0", "ieee-data", "iproute2"):
        assert package in runtime_runs
    assert "libvirt-dev" not in runtime_runs and "gcc" not in runtime_runs


def test_image_environment_is_made_of_real_settings() -> None:
    env = svc.metalbus_environment(svc.image_environment())
    assert env, "the image sets the listen addresses"
    for name in env:
        service = svc.service_of_variable(name)
        assert service is not None and name in svc.variables(service), name
    for service in subjects.SERVICES:
        host, _ = svc.listen(service, svc.settings_from(service, env))
        assert host == "0.0.0.0", f"{service} must listen beyond the container's loopback"


def test_image_exposes_the_default_ports() -> None:
    exposed = {
        int(p)
        for word, rest in svc.dockerfile_instructions()
        if word == "EXPOSE"
        for p in rest.split()
    }
    for service in subjects.SERVICES:
        _, port = svc.listen(service, svc.settings_from(service, {}))
        assert port in exposed, service


def test_serve_runs_each_service_main() -> None:
    """``metalbus serve <service>`` (the image's command) imports metalbus.<service>.service
    and calls its main(); that main exists and defines the service."""
    from metalbus.cli.main import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}
    assert "serve" in commands
    for service in subjects.SERVICES:
        assert svc.definition(service).name == service


def serve_args(command: list[str]) -> str:
    """The service a container command runs; fails unless it is ``serve <service>``."""
    assert len(command) == 2 and command[0] == "serve", command
    assert command[1] in subjects.SERVICES, command
    return command[1]


def check_environment(service: str, env: dict[str, str], where: str) -> Any:
    """Every METALBUS_ variable is one of the service's settings; the settings build."""
    for name in svc.metalbus_environment(env):
        assert name in svc.variables(service), f"{where}: {name} is not a {service} setting"
    return svc.settings_from(service, {**svc.image_environment(), **env})


def check_probe(service: str, settings: Any, port: int, path: str, where: str) -> None:
    _, listening = svc.listen(service, settings)
    assert port == listening, f"{where}: probe on port {port}, {service} listens on {listening}"
    assert path in svc.served_paths(service), f"{where}: {service} serves no {path}"


# -- docker-compose -----------------------------------------------------------------------


COMPOSE_ENV = {"POSTGRES_PASSWORD": "pw"}


def interpolate(value: Any) -> Any:
    """docker compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, from COMPOSE_ENV."""
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in COMPOSE_ENV:
            return COMPOSE_ENV[name]
        assert op != ":?", f"${{{name}}} is required: {arg}"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


def test_compose_runs_every_service_once(compose: dict[str, Any]) -> None:
    ours = [s for s in compose["services"].values() if s.get("image", "").startswith("metalbus")]
    assert sorted(serve_args(s["command"]) for s in ours) == sorted(subjects.SERVICES)


def test_compose_nats_has_jetstream_and_a_healthcheck(compose: dict[str, Any]) -> None:
    nats = compose["services"]["nats"]
    assert "--jetstream" in nats["command"]
    monitor = nats["command"][nats["command"].index("--http_port") + 1]
    url = urllib.parse.urlsplit(nats["healthcheck"]["test"][-1])
    assert (url.port, url.path) == (int(monitor), "/healthz")
    assert "js-enabled-only=true" in url.query
    assert compose["services"]["postgres"]["healthcheck"]["test"][1] == "pg_isready"


@pytest.mark.parametrize("service", subjects.SERVICES)
def test_compose_service_matches_the_code(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    where = f"docker-compose {service}"
    assert serve_args(spec["command"]) == service
    env = {k: str(v) for k, v in spec["environment"].items()}
    settings = check_environment(service, env, where)
    # Waits for what it needs, and only on things that have a healthcheck.
    for needed in ("nats", "postgres"):
        assert spec["depends_on"][needed] == {"condition": "service_healthy"}
    for needed in spec["depends_on"]:
        assert "healthcheck" in compose["services"][needed], needed
    # Its healthcheck asks its own readiness endpoint.
    url = urllib.parse.urlsplit(spec["healthcheck"]["test"][-1])
    assert url.hostname == "127.0.0.1" and url.path == "/readyz"
    check_probe(service, settings, url.port or 80, url.path, where)
    # NATS and PostgreSQL by service name, or through the host's loopback from the host network.
    nats = urllib.parse.urlsplit(settings.nats_url)
    database = urllib.parse.urlsplit(settings.database_url)
    assert settings.database_url.startswith("postgresql://")
    if service in LAYER2:
        assert spec["network_mode"] == "host"
        assert {"NET_RAW", "NET_ADMIN"} <= set(spec["cap_add"]) and spec["cap_drop"] == ["ALL"]
        published = {
            name: int(compose["services"][name]["ports"][0].split(":")[1])
            for name in ("nats", "postgres")
        }
        assert (nats.hostname, nats.port) == ("127.0.0.1", published["nats"])
        assert (database.hostname, database.port) == ("127.0.0.1", published["postgres"])
    else:
        assert "network_mode" not in spec and "cap_add" not in spec and "user" not in spec
        assert nats.hostname == "nats" and database.hostname == "postgres"


# -- Kubernetes ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, Rendered]:
    return request.param, render(K8S / "overlays" / request.param)


def documented_secrets() -> dict[str, set[str]]:
    """The Secrets deploy/k8s/README.md tells production to create, with their keys."""
    text = (K8S / "README.md").read_text()
    out: dict[str, set[str]] = {}
    for block in re.split(r"create secret generic ", text)[1:]:
        name = block.split()[0]
        command = block.split("\n```")[0].split("kubectl")[0]
        out[name] = set(re.findall(r"--from-literal=([A-Z0-9_]+)=", command))
    return out


def secret_keys(rendered: Rendered, name: str) -> set[str]:
    secret = rendered.find("Secret", name)
    if secret is not None:
        return set(secret.get("stringData", {})) | set(secret.get("data", {}))
    documented = documented_secrets()
    assert name in documented, f"Secret {name} is neither rendered nor documented"
    return documented[name]


def container_environment(rendered: Rendered, container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = rendered.get("ConfigMap", source["configMapRef"]["name"])
            env.update({k: str(v) for k, v in config.get("data", {}).items()})
        else:
            for key in secret_keys(rendered, source["secretRef"]["name"]):
                env[key] = _stand_in(key)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            field_path = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = FIELD_REF_STAND_IN[field_path]
    return env


def _stand_in(key: str) -> str:
    """A valid value for a secret whose real value lives outside the repository."""
    if key.endswith("_DATABASE_URL"):
        return "postgresql://metalbus:secret@db.example:5432/metalbus"
    if key.endswith("_SECRET_KEY"):
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()
    return "mb_0123456789ab.secret"


def workloads(rendered: Rendered) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """(object, container, service) of every metalbus container."""
    out = []
    for obj in rendered.objects:
        spec = pod_spec(obj)
        for container in (spec or {}).get("containers", []):
            if container["image"].split(":")[0] == "metalbus":
                out.append((obj, container, serve_args(container["args"])))
    return out


def test_k8s_objects_pass_the_kubernetes_schemas(overlay: tuple[str, Rendered]) -> None:
    name, rendered = overlay
    assert len(rendered.objects) > 10
    for obj in rendered.objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")


def test_k8s_runs_every_service(overlay: tuple[str, Rendered]) -> None:
    _, rendered = overlay
    assert {service for _, _, service in workloads(rendered)} == set(subjects.SERVICES)


def test_k8s_containers_match_the_code(overlay: tuple[str, Rendered]) -> None:
    name, rendered = overlay
    for obj, container, service in workloads(rendered):
        where = f"{name} {obj['kind']}/{obj['metadata']['name']}"
        env = container_environment(rendered, container)
        settings = check_environment(service, env, where)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, where
            port = get["port"] if isinstance(get["port"], int) else ports[get["port"]]
            check_probe(service, settings, port, path, where)
        host, _ = svc.listen(service, settings)
        assert host != "127.0.0.1", f"{where}: probes cannot reach {host}"
        assert urllib.parse.urlsplit(settings.nats_url).hostname == "nats", where


def test_k8s_layer2_services_are_daemonsets_on_labelled_nodes(
    overlay: tuple[str, Rendered],
) -> None:
    _, rendered = overlay
    for obj, container, service in workloads(rendered):
        spec = pod_spec(obj)
        assert spec is not None
        caps = container["securityContext"]["capabilities"]
        if service in LAYER2:
            assert obj["kind"] == "DaemonSet"
            assert spec["hostNetwork"] is True
            assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
            assert spec["nodeSelector"] == {f"metalbus.io/{service}": "true"}
            assert {"NET_RAW", "NET_ADMIN"} <= set(caps["add"])
        else:
            assert obj["kind"] == "Deployment"
            assert not spec.get("hostNetwork") and "add" not in caps
            assert spec["securityContext"]["runAsNonRoot"] is True


def test_k8s_nats_comes_from_the_official_chart(overlay: tuple[str, Rendered]) -> None:
    name, rendered = overlay
    assert len(rendered.helm_charts) == 1
    folder, chart = rendered.helm_charts[0]
    assert (chart["name"], chart["repo"], chart["releaseName"]) == ("nats", NATS_CHART_REPO, "nats")
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    values = yaml.safe_load((folder / chart["valuesFile"]).read_text())
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    if name == "production":
        assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}


def test_k8s_production_is_replicated() -> None:
    rendered = render(K8S / "overlays" / "production")
    for obj, _, service in workloads(rendered):
        if service in SCALED and obj["metadata"]["name"] != "power-poller":
            assert obj["spec"]["replicas"] >= 2, obj["metadata"]["name"]
    assert rendered.get("Deployment", "power-poller")["spec"]["replicas"] == 1
    for service in subjects.SERVICES:
        config = rendered.get("ConfigMap", f"metalbus-{service}")
        settings = svc.settings_from(service, config["data"])
        assert settings.stream_replicas == 3, service
        assert rendered.find("Secret", f"metalbus-{service}") is None, "secrets stay out"
    for name, keys in documented_secrets().items():
        service = name.removeprefix("metalbus-")
        assert keys and keys <= svc.variables(service), name
