"""The container and deploy/: the Dockerfiles lint clean (hadolint) and install and serve as the
README does, the image's command and health check run for real here, every Kubernetes manifest
validates against the Kubernetes schemas (offline, kubernetes-validate), the manifests and the
compose file hold settings the proxy accepts, probes on the health endpoints and a grace period
longer than the drain, and the Grafana dashboard queries only the proxy's metrics."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from proxy import __version__
from proxy.config import SPECS, Settings, load_settings
from tests.processes import clean_env, console_script, free_port, stop, wait_healthy

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = "1.30"  # native sidecars (init containers that keep running) are on by default
IMAGE = f"openai-tool-proxy:{__version__}"
METRICS = {
    "tool_proxy_requests_total",
    "tool_proxy_request_rounds",
    "tool_proxy_tool_calls_total",
    "gen_ai_execute_tool_duration_seconds",
    "gen_ai_server_time_to_first_token_seconds",
    "tool_proxy_overhead_seconds",
    "gen_ai_client_token_usage",
    "tool_proxy_hung_tool_threads",
}


class Dockerfile:
    """A Dockerfile's instructions, continuation lines joined, by stage."""

    def __init__(self, path: Path) -> None:
        text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
        self.stages: list[list[tuple[str, str]]] = []
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            keyword, _, rest = line.strip().partition(" ")
            if keyword.upper() == "FROM":
                self.stages.append([])
            self.stages[-1].append((keyword.upper(), rest.strip()))

    def args(self, keyword: str, stage: int = -1) -> list[str]:
        return [rest for key, rest in self.stages[stage] if key == keyword]

    def env(self, stage: int = -1) -> dict[str, str]:
        return dict(
            item.split("=", 1) for rest in self.args("ENV", stage) for item in shlex.split(rest)
        )


IMAGE_FILE = Dockerfile(ROOT / "Dockerfile")


def readme_setup() -> tuple[list[str], list[str]]:
    """The README's install command (pip's arguments) and its serve command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1]
    command = re.search(r"```sh\n(pip install .*?)\n```", setup)
    assert command, "README: no install command under Set up"
    install, serve = command.group(1).split(" && ")
    return shlex.split(install)[2:], shlex.split(serve)


def tool(name: str) -> str:
    scripts = sysconfig.get_path("scripts")
    found = shutil.which(name, path=os.pathsep.join([scripts, os.environ["PATH"]]))
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[test]')")
    return found


@pytest.mark.parametrize(
    "path", [ROOT / "Dockerfile", *sorted((DEPLOY / "examples").glob("*Dockerfile"))]
)
def test_the_dockerfile_lints_clean(path: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_and_serves_as_the_readme_says() -> None:
    targets, serve = readme_setup()
    installs = [shlex.split(run) for run in IMAGE_FILE.args("RUN", 0) if "pip install" in run]
    assert len(installs) == 1
    assert [word for word in installs[0][2:] if not word.startswith("--")] == targets
    command = json.loads(IMAGE_FILE.args("CMD")[0])
    assert command == serve[:2] == ["openai-tool-proxy", "serve"]
    # Under an init that reaps the orphans tools leave: Debian's tini, in the runtime stage.
    assert json.loads(IMAGE_FILE.args("ENTRYPOINT")[0]) == ["tini", "--"]
    installs_tini = [run for run in IMAGE_FILE.args("RUN") if "'tini=" in run]
    assert len(installs_tini) == 1 and "apt-get install" in installs_tini[0]
    # The README's flags are the image's environment, so `docker run -e` can change them.
    flags = dict(zip(serve[2::2], serve[3::2], strict=True))
    env = IMAGE_FILE.env()
    for flag, value in flags.items():
        assert env[SPECS[flag[2:].replace("-", "_")].env] == value
    assert env["TOOL_PROXY_HOST"] == "0.0.0.0"
    assert IMAGE_FILE.args("EXPOSE") == [env["TOOL_PROXY_PORT"]] == [str(Settings().port)]
    assert IMAGE_FILE.args("STOPSIGNAL") == ["SIGTERM"]
    assert IMAGE_FILE.args("USER") == ["10001"]


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    kept = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = [
        source
        for rest in IMAGE_FILE.args("COPY", 0)
        for source in shlex.split(rest)[:-1]
        if not source.startswith("--")
    ]
    assert copied and set(copied) <= kept
    assert all((ROOT / source).exists() for source in copied)


def test_the_image_command_serves_and_its_health_check_passes(tmp_path: Path) -> None:
    """The image's command with the image's environment (a free port here), as the container
    runs it: it serves, warns that it listens beyond loopback without keys, and the image's
    HEALTHCHECK passes — and fails once the proxy is gone."""
    port = str(free_port())
    image_env = {k: v for k, v in IMAGE_FILE.env().items() if k != "PATH"}
    env = clean_env(**{**image_env, "TOOL_PROXY_PORT": port})
    check = json.loads(IMAGE_FILE.args("HEALTHCHECK")[0].split(" CMD ", 1)[1])
    assert check[0] == "python"
    check[0] = sys.executable
    proc = subprocess.Popen(
        [console_script(), *json.loads(IMAGE_FILE.args("CMD")[0])[1:]],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health/liveness")
        assert subprocess.run(check, env=env, capture_output=True, check=False).returncode == 0
    finally:
        _, err = stop(proc)
    assert "listening on 0.0.0.0, beyond this machine, without client keys" in err
    assert subprocess.run(check, env=env, capture_output=True, check=False).returncode != 0


def test_the_plugin_example_extends_the_image_and_serves_as_its_user() -> None:
    example = Dockerfile(DEPLOY / "examples" / "plugin.Dockerfile")
    assert example.args("FROM") == [IMAGE]
    assert f"docker build -t {IMAGE} ." in (ROOT / "Dockerfile").read_text()
    assert example.args("USER")[-1] == IMAGE_FILE.args("USER")[-1]
    assert any("pip install" in run for run in example.args("RUN"))


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def kinds(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path, doc in manifests() if doc["kind"] == kind]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize(
    "path, manifest",
    manifests(),
    ids=[f"{relative(p)}:{m['kind']}:{m['metadata']['name']}" for p, m in manifests()],
)
def test_every_manifest_validates(path: Path, manifest: dict[str, Any]) -> None:
    # strict: a property the schema does not know (a typo) is an error too.
    kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_the_kustomization_lists_every_standalone_manifest() -> None:
    folder = DEPLOY / "k8s" / "standalone"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = sorted(kustomization["resources"])
    assert listed == sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")


def proxy_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod.get("initContainers", []) + pod["containers"]
    (found,) = [c for c in containers if c["image"] == IMAGE]
    return found


ENV_SOURCES = (("ConfigMap", "configMapRef", "data"), ("Secret", "secretRef", "stringData"))


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """The container's TOOL_PROXY_* environment, ConfigMaps and Secrets included."""
    sources = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in manifests()}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        for kind, key, data in ENV_SOURCES:
            if key in source:
                env.update(sources[(kind, source[key]["name"])][data])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return {k: v for k, v in env.items() if k.startswith("TOOL_PROXY_")}


def probed_path(probe: dict[str, Any]) -> str:
    if "httpGet" in probe:
        return str(probe["httpGet"]["path"])
    found = re.findall(r"/health/\w+", " ".join(probe["exec"]["command"]))
    assert len(found) == 1
    return str(found[0])


@pytest.mark.parametrize("layout", ["sidecar", "standalone"])
def test_the_proxy_pods_are_probed_and_drain_before_they_are_killed(layout: str) -> None:
    deployments = [
        doc
        for path, doc in kinds("Deployment")
        if path.parent.name == layout and doc["metadata"]["name"] != "openai-tool-proxy-redis"
    ]
    assert len(deployments) == 1
    pod = deployments[0]["spec"]["template"]["spec"]
    container = proxy_container(pod)
    assert probed_path(container["livenessProbe"]) == "/health/liveness"
    assert probed_path(container["readinessProbe"]) == "/health/readiness"
    settings = load_settings(environ=env_of(container))  # settings the proxy accepts
    assert pod["terminationGracePeriodSeconds"] > settings.drain_timeout + 1
    security = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert {"mountPath": "/tmp", "name": container["volumeMounts"][0]["name"]} in container[
        "volumeMounts"
    ]  # where Python and the workers' metrics files write


def test_the_sidecar_app_reaches_the_proxy_on_localhost() -> None:
    ((_, deployment),) = [(p, d) for p, d in kinds("Deployment") if p.parent.name == "sidecar"]
    pod = deployment["spec"]["template"]["spec"]
    assert proxy_container(pod)["restartPolicy"] == "Always"  # a native sidecar
    (app,) = pod["containers"]
    settings = load_settings(environ=env_of(proxy_container(pod)))
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["OPENAI_BASE_URL"] == f"http://localhost:{settings.port}/v1"


def test_the_standalone_replicas_share_redis_and_scale() -> None:
    ((_, deployment),) = [
        (p, d) for p, d in kinds("Deployment") if d["metadata"]["name"] == "openai-tool-proxy"
    ]
    container = proxy_container(deployment["spec"]["template"]["spec"])
    env = env_of(container)
    settings = load_settings(environ=env)
    assert deployment["spec"]["replicas"] > 1
    assert settings.store.startswith("redis://") and settings.api_keys
    assert settings.upstream_api_key
    redis_services = {d["metadata"]["name"] for _, d in kinds("Service")}
    assert settings.store.split("//")[1].split(":")[0] in redis_services
    assert [d["spec"]["scaleTargetRef"]["name"] for _, d in kinds("HorizontalPodAutoscaler")] == [
        "openai-tool-proxy"
    ]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert [d["spec"]["selector"]["matchLabels"] for _, d in kinds("PodDisruptionBudget")] == [
        labels
    ]
    ((_, service),) = [
        (p, d) for p, d in kinds("Service") if d["metadata"]["name"] == "openai-tool-proxy"
    ]
    assert service["spec"]["selector"] == labels
    assert [p["containerPort"] for p in container["ports"]] == [settings.port]


def test_the_compose_app_reaches_its_sidecar_on_localhost() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    proxy, app = compose["services"]["proxy"], compose["services"]["app"]
    assert proxy["image"] == IMAGE
    settings = load_settings(environ=proxy["environment"])
    assert app["network_mode"] == "service:proxy"
    assert app["depends_on"] == {"proxy": {"condition": "service_healthy"}}
    assert app["environment"]["OPENAI_BASE_URL"] == f"http://localhost:{settings.port}/v1"
    test = proxy["healthcheck"]["test"]
    assert test[0] == "CMD" and f"127.0.0.1:{settings.port}/health/readiness" in test[-1]
    assert float(proxy["stop_grace_period"].rstrip("s")) > settings.drain_timeout + 1


def test_the_dashboard_queries_the_proxys_metrics_only() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"]["query"])
    named = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in exprs
        for name in re.findall(r"([a-z_]+)\{", expr)
    }
    named |= {name for expr in exprs for name in re.findall(r"label_values\((\w+)", expr)}
    assert named == METRICS
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
