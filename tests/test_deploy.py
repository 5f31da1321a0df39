"""What operators deploy sluice with: the Dockerfile, deploy/systemd and deploy/kubernetes.

Kubernetes manifests are read into the `kubernetes` package's API models and written back. The
models' deserializer drops a key it does not know without a word, so a misspelled field
(`readinesProbe`) would ship a pod without its probe: the round trip must give back the input.
The sluice config in each ConfigMap must pass `sluice validate`, and the pod around it must be
wired to that config: the probe and the preStop hook reach its admin address, the config volume
is the ConfigMap's directory (no subPath, or a ConfigMap update never reaches sluice), the grace
period covers the drain, the Service's port is the listener's. sluice-admin, the probe and
preStop helper baked into the image, runs against a real sluice.

The image itself is built only where a docker daemon answers; elsewhere that test skips with the
reason, and the Dockerfile's contract (stages, user, entrypoint, what .dockerignore sends) is
checked statically.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient

from engine.runtime.supervisor import KILL_GRACE
from support import free_port, simple_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "sluice.service"
SLUICE_ADMIN = DEPLOY / "container" / "sluice-admin"
DOCKERFILE = ROOT / "Dockerfile"

EXPECTED_KINDS = {
    "sidecar.yaml": ["ConfigMap", "Deployment", "Service"],
    "daemonset.yaml": ["ConfigMap", "DaemonSet", "Service"],
}
MODELS = {
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
}
WORKLOADS = ("Deployment", "DaemonSet")


def _load_admin_module():
    """deploy/container/sluice-admin as a module (it has no .py suffix: it is a command)."""
    loader = importlib.machinery.SourceFileLoader("sluice_admin", str(SLUICE_ADMIN))
    spec = importlib.util.spec_from_loader("sluice_admin", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


sluice_admin = _load_admin_module()


# --- manifests ------------------------------------------------------------------------------------

def _documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d is not None]


def _doc(name: str, kind: str) -> dict:
    (doc,) = [d for d in _documents(name) if d["kind"] == kind]
    return doc


def _workload(name: str) -> dict:
    (doc,) = [d for d in _documents(name) if d["kind"] in WORKLOADS]
    return doc


def _round_trip(doc: dict):
    """The document as the Kubernetes API models read it and write it back."""
    api = ApiClient()
    model = MODELS[(doc["apiVersion"], doc["kind"])]
    return api.sanitize_for_serialization(api._ApiClient__deserialize(doc, model))


def _differences(given, back, path: str = "") -> list[str]:
    """Where `back` differs from `given`: a key the models dropped shows as 'dropped'."""
    if isinstance(given, dict) and isinstance(back, dict):
        out = []
        for key in given:
            if key not in back:
                out.append(f"{path}.{key}: dropped (not a field of the API model)")
            else:
                out += _differences(given[key], back[key], f"{path}.{key}")
        out += [f"{path}.{key}: added" for key in back if key not in given]
        return out
    if isinstance(given, list) and isinstance(back, list) and len(given) == len(back):
        return [d for i, (g, b) in enumerate(zip(given, back))
                for d in _differences(g, b, f"{path}[{i}]")]
    return [] if given == back else [f"{path}: {given!r} became {back!r}"]


def _pod(name: str) -> dict:
    return _workload(name)["spec"]["template"]["spec"]


def _container(pod: dict, cname: str) -> dict:
    (c,) = [c for c in pod["containers"] if c["name"] == cname]
    return c


def _arg(args: list[str], flag: str) -> str:
    assert flag in args, f"sluice is not given {flag}: {args}"
    return args[args.index(flag) + 1]


def _config_path(name: str) -> str:
    return _arg(_container(_pod(name), "sluice")["args"], "-c")


def _sluice_config(name: str) -> dict:
    """The sluice config the pod reads: the ConfigMap key at the -c path, through its mount."""
    pod = _pod(name)
    path = Path(_config_path(name))
    (mount,) = [m for m in _container(pod, "sluice")["volumeMounts"]
                if Path(m["mountPath"]) == path.parent]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = _doc(name, "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    return yaml.safe_load(configmap["data"][path.name])


def _prestop(name: str):
    command = _container(_pod(name), "sluice")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sluice-admin"
    return command, sluice_admin.parser().parse_args(command[1:])


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


MANIFESTS = sorted(EXPECTED_KINDS)


def test_the_manifest_directory_holds_exactly_the_checked_manifests():
    assert sorted(p.name for p in KUBERNETES.glob("*.y*ml")) == MANIFESTS


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_holds_the_expected_kinds(name):
    assert sorted(d["kind"] for d in _documents(name)) == EXPECTED_KINDS[name]


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_document_round_trips_through_the_kubernetes_api_models(name):
    for doc in _documents(name):
        assert _differences(doc, _round_trip(doc)) == [], doc["kind"]


def test_the_round_trip_catches_a_misspelled_field():
    doc = _workload("sidecar.yaml")
    sluice = _container(doc["spec"]["template"]["spec"], "sluice")
    sluice["readinesProbe"] = sluice.pop("readinessProbe")
    assert _differences(doc, _round_trip(doc)) == [
        ".spec.template.spec.containers[1].readinesProbe: dropped (not a field of the API model)"]


def test_the_round_trip_refuses_a_document_without_a_required_field():
    doc = _workload("daemonset.yaml")
    del doc["spec"]["selector"]
    with pytest.raises(ValueError, match="selector"):
        _round_trip(doc)


@pytest.mark.parametrize("name", MANIFESTS)
def test_the_configmap_config_passes_sluice_validate(name, tmp_path):
    for key, text in _doc(name, "ConfigMap")["data"].items():
        path = tmp_path / key
        path.write_text(text)
        result = subprocess.run([sys.executable, "-m", "engine", "validate", str(path)],
                                cwd=ROOT, capture_output=True, text=True)
        assert (result.returncode, result.stderr) == (0, ""), f"{name}: {key}"


@pytest.mark.parametrize("name", MANIFESTS)
def test_the_config_is_the_configmap_directory_mounted_without_subpath(name):
    pod = _pod(name)
    config_dir = str(Path(_config_path(name)).parent)
    mounts = _container(pod, "sluice")["volumeMounts"]
    (mount,) = [m for m in mounts if m["mountPath"] == config_dir]
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == _doc(name, "ConfigMap")["metadata"]["name"]
    assert "items" not in volume["configMap"]    # every key, as the ConfigMap has them
    assert _sluice_config(name)["listeners"]     # and the -c file is one of its keys


@pytest.mark.parametrize("name", MANIFESTS)
def test_readiness_is_sluice_admin_ready_on_the_configs_loopback_admin(name):
    sluice = _container(_pod(name), "sluice")
    probe = sluice["readinessProbe"]
    assert probe["exec"]["command"] == ["sluice-admin", "ready"]   # GET /ready: tested below
    assert "livenessProbe" not in sluice     # a draining proxy must not be restarted
    admin = _sluice_config(name).get("admin", {})
    address = admin.get("address", "127.0.0.1:9901")
    # sluice-admin runs inside the container: its default address is the config's, on loopback,
    # where no token is needed (and none sits in the manifest)
    env = {e["name"] for e in sluice.get("env", [])}
    assert "SLUICE_ADMIN_ADDRESS" not in env and "SLUICE_ADMIN_TOKEN" not in env
    assert address == sluice_admin.DEFAULT_ADDRESS
    assert ipaddress.ip_address(address.rsplit(":", 1)[0]).is_loopback
    assert admin.get("token") is None


@pytest.mark.parametrize("name", MANIFESTS)
def test_prestop_drains_after_endpoints_update_within_the_grace_period(name):
    command, args = _prestop(name)
    assert args.command == "drain" and "--address" not in command
    assert args.after >= 3                   # endpoints leave the Service meanwhile
    drain_timeout = float(_arg(_container(_pod(name), "sluice")["args"], "--drain-timeout"))
    # the hook waits as long as sluice may take: the drain, then the kill of a busy worker
    assert args.wait >= drain_timeout + KILL_GRACE
    assert _pod(name)["terminationGracePeriodSeconds"] > args.after + args.wait


@pytest.mark.parametrize("name", MANIFESTS)
def test_the_sluice_container_runs_locked_down_as_the_images_user(name):
    pod = _pod(name)
    sluice = _container(pod, "sluice")
    sc = sluice["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == _dockerfile_uid()
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"cpu", "memory"} <= set(sluice["resources"]["requests"])
    assert "memory" in sluice["resources"]["limits"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_workers_follow_the_cpu_request_not_the_nodes_cpus(name):
    sluice = _container(_pod(name), "sluice")
    assert _arg(sluice["args"], "--workers") == "$(SLUICE_WORKERS)"
    (env,) = [e for e in sluice["env"] if e["name"] == "SLUICE_WORKERS"]
    assert env["valueFrom"]["resourceFieldRef"] == {"resource": "requests.cpu", "divisor": "1"}


@pytest.mark.parametrize("name", MANIFESTS)
def test_the_service_and_container_port_are_the_sluice_listener(name):
    sluice = _container(_pod(name), "sluice")
    ports = {p["name"]: p["containerPort"] for p in sluice["ports"]}
    listener_ports = {_port(lst["address"]) for lst in _sluice_config(name)["listeners"]}
    assert set(ports.values()) == listener_ports
    for lst in _sluice_config(name)["listeners"]:
        host = lst["address"].rsplit(":", 1)[0]
        assert ipaddress.ip_address(host).is_unspecified, "the kubelet and Services use the pod IP"
    service = _doc(name, "Service")
    assert service["spec"]["selector"] == _workload(name)["spec"]["selector"]["matchLabels"]
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports


def test_the_sidecar_routes_to_the_app_over_the_pods_loopback():
    pod = _pod("sidecar.yaml")
    app = _container(pod, "app")
    app_port = app["ports"][0]["containerPort"]
    endpoints = [e["address"] for c in _sluice_config("sidecar.yaml")["clusters"]
                 for e in c["endpoints"]]
    assert endpoints == [f"127.0.0.1:{app_port}"]
    # the app outlives sluice's drain: the kubelet signals both containers at once
    _, args = _prestop("sidecar.yaml")
    sleep = app["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and float(sleep[1]) >= args.after + args.wait
    assert float(sleep[1]) < pod["terminationGracePeriodSeconds"]
    service_targets = {p["targetPort"] for p in _doc("sidecar.yaml", "Service")["spec"]["ports"]}
    assert "app" not in service_targets and app_port not in service_targets


def test_the_daemonset_is_node_local_by_hostport_with_its_own_network_namespace():
    pod = _pod("daemonset.yaml")
    assert not pod.get("hostNetwork")         # keeps the admin API on the pod's own loopback
    (port,) = _container(pod, "sluice")["ports"]
    assert port["hostPort"] == port["containerPort"]
    assert _doc("daemonset.yaml", "Service")["spec"]["internalTrafficPolicy"] == "Local"


# --- sluice-admin against a real sluice ---------------------------------------------------------

def _admin(address: str, *argv: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_ADMIN")}
    env["SLUICE_ADMIN_ADDRESS"] = address
    if token is not None:
        env["SLUICE_ADMIN_TOKEN"] = token
    return subprocess.run([sys.executable, str(SLUICE_ADMIN), *argv], env=env,
                          capture_output=True, text=True, timeout=60)


def test_sluice_admin_ready_is_0_when_sluice_serves(start_sluice, upstream):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}))
    assert _admin(s.config["admin"]["address"], "ready").returncode == 0


def test_sluice_admin_ready_is_1_when_nothing_listens():
    result = _admin(f"127.0.0.1:{free_port()}", "ready")
    assert result.returncode == 1 and "refused" in result.stderr.lower()


def test_sluice_admin_sends_the_token_from_the_environment(start_sluice, upstream):
    config = simple_config(free_port(), {"up": [upstream.address]})
    config["admin"]["token"] = "s3cret-token"
    s = start_sluice(config)
    address = config["admin"]["address"]
    assert _admin(address, "ready", token="s3cret-token").returncode == 0
    refused = _admin(address, "ready")
    assert refused.returncode == 1 and "401" in refused.stderr
    assert s.proc.poll() is None


def test_sluice_admin_drain_lets_in_flight_requests_finish_and_waits_for_sluice_to_exit(
        start_sluice, upstream):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}))
    address = s.config["admin"]["address"]
    answers: list[int] = []
    request = threading.Thread(target=lambda: answers.append(
        urllib.request.urlopen(f"{s.url}/slow/1500", timeout=30).status))
    request.start()
    deadline = time.monotonic() + 15
    while upstream.stats()["slow_started"] == 0:        # the request is in flight upstream
        assert time.monotonic() < deadline, "the slow request never reached the upstream"
        time.sleep(0.02)
    drain = subprocess.Popen([sys.executable, str(SLUICE_ADMIN), "--address", address,
                              "drain", "--after", "0", "--wait", "30"],
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while _admin(address, "ready").returncode == 0:     # draining (503), then gone
        assert time.monotonic() < deadline, "sluice never stopped being ready"
        time.sleep(0.05)
    assert drain.wait(60) == 0, drain.stderr.read()
    # the admin API is the last thing sluice closes before it exits
    assert s.proc.wait(30) == 0
    request.join(30)
    assert answers == [200]


def test_sluice_admin_drain_of_a_sluice_already_gone_is_0():
    assert _admin(f"127.0.0.1:{free_port()}", "drain", "--after", "0").returncode == 0


# --- systemd --------------------------------------------------------------------------------------

def _unit() -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, repeated keys kept (ExecReload=, ...)."""
    entries, section = [], ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def _unit_values(section: str, key: str) -> list[str]:
    return [v for s, k, v in _unit() if (s, k) == (section, key)]


def _unit_value(section: str, key: str) -> str:
    (value,) = _unit_values(section, key)
    return value


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not available: the key-level checks below still run")
    # verify insists that ExecStart's binary exists: point it at a stand-in
    stub = tmp_path / "sluice"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = tmp_path / "sluice.service"
    unit.write_text(UNIT.read_text().replace("/opt/sluice/bin/sluice", str(stub)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True)
    # an unknown or misspelled key is only a warning (exit 0): any output is a failure
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_unit_runs_drains_and_reloads_sluice():
    assert set(s for s, _, _ in _unit()) == {"Unit", "Service", "Install"}
    assert _unit_value("Service", "Type") == "exec"          # sluice does not sd_notify
    start = shlex.split(_unit_value("Service", "ExecStart"))
    assert start[:4] == ["/opt/sluice/bin/sluice", "run", "-c", "/etc/sluice/sluice.yaml"]
    assert _unit_values("Service", "ExecReload") == [
        "/opt/sluice/bin/sluice validate /etc/sluice/sluice.yaml", "/bin/kill -HUP $MAINPID"]
    assert _unit_value("Service", "KillSignal") == "SIGTERM"
    assert _unit_value("Service", "KillMode") == "mixed"     # the supervisor drains its workers
    drain_timeout = float(_arg(start, "--drain-timeout"))
    assert float(_unit_value("Service", "TimeoutStopSec")) > drain_timeout + KILL_GRACE
    assert _unit_value("Service", "Restart") == "on-failure"
    assert _unit_value("Service", "User") == "sluice"
    assert _unit_value("Service", "LimitNOFILE") == "65536"
    assert _unit_value("Install", "WantedBy") == "multi-user.target"


def test_systemd_unit_is_hardened():
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
                       ("SystemCallFilter", "@system-service"),
                       ("CapabilityBoundingSet", ""), ("AmbientCapabilities", "")]:
        assert _unit_value("Service", key) == value, key
    # where a file access log can go under ProtectSystem=strict
    assert _unit_value("Service", "LogsDirectory") == "sluice"


# --- Dockerfile -----------------------------------------------------------------------------------

def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
        pending = ""
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _dockerfile_uid() -> int:
    runtime = _stages()[-1]
    (user,) = [a for i, a in runtime if i == "USER"]
    args = dict(a.split("=", 1) for i, a in runtime if i == "ARG" and "=" in a)
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user).split(":")[0]
    return int(uid)


def test_dockerfile_builds_the_wheel_in_one_stage_and_installs_only_wheels_in_the_next():
    build, runtime = _stages()
    assert build[0][1].endswith("AS build") and "slim" in build[0][1]
    assert any(i == "RUN" and "pip wheel" in a for i, a in build)
    assert any(i == "RUN" and "gcc" in a for i, a in build)
    assert "slim" in runtime[0][1]
    runs = [a for i, a in runtime if i == "RUN"]
    assert not any("apt-get" in a or "gcc" in a for a in runs)     # no compiler at run time
    (install,) = [a for a in runs if "pip install" in a]
    assert "--no-index" in install and "from=build" in install


def test_dockerfile_runs_sluice_as_a_numeric_non_root_user():
    assert _dockerfile_uid() > 0     # numeric, so Kubernetes' runAsNonRoot can check it
    runtime = dict(_stages()[-1])
    assert json.loads(runtime["ENTRYPOINT"]) == ["sluice"]
    assert json.loads(runtime["CMD"]) == ["run", "-c", "/etc/sluice/sluice.yaml"]
    assert json.loads(runtime["CMD"])[2] == _config_path("sidecar.yaml")
    assert json.loads(runtime["HEALTHCHECK"].split("CMD ", 1)[1]) == ["sluice-admin", "ready"]


def test_the_images_default_config_passes_sluice_validate_and_listens_on_the_exposed_port():
    runtime = _stages()[-1]
    copies = dict(a.split()[-2:][::-1] for i, a in runtime if i == "COPY")
    source = ROOT / copies["/etc/sluice/sluice.yaml"]
    result = subprocess.run([sys.executable, "-m", "engine", "validate", str(source)],
                            cwd=ROOT, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
    config = yaml.safe_load(source.read_text())
    exposed = {int(a) for i, a in runtime if i == "EXPOSE"}
    assert {_port(lst["address"]) for lst in config["listeners"]} == exposed
    assert config["admin"]["address"] == sluice_admin.DEFAULT_ADDRESS


def _glob_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex (Go's filepath.Match, plus `**` for any depth)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _dockerignored(path: str) -> bool:
    """Whether docker leaves `path` out of the build context: the last matching line wins, and a
    line matches a path when it matches the path or one of its parent directories."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _glob_regex(line.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_what_the_dockerfile_copies_and_no_host_built_extension():
    copied = [w for stage in _stages() for i, a in stage if i == "COPY" and "--from" not in a
              for w in a.split()[:-1] if not w.startswith("--")]
    assert copied, "the Dockerfile copies nothing?"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not _dockerignored(source), source
    for kept in ["engine/_fast/router.pyx", "engine/_fast/router.pxd", "engine/cli.py"]:
        assert not _dockerignored(kept), kept
    for left_out in ["engine/_fast/router.cpython-311-x86_64-linux-gnu.so",
                     "engine/_fast/router.c", "engine/__pycache__/cli.cpython-311.pyc",
                     "tests/test_deploy.py", ".git/config", "build/lib/engine/cli.py"]:
        assert _dockerignored(left_out), left_out


def _docker_unavailable() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command"
    try:
        info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 30 s"
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines() or ["(no output)"]
        return f"the docker daemon does not answer: {lines[-1]}"
    return None


@pytest.mark.timeout(1800)
def test_docker_image_builds_and_serves_read_only_as_non_root_then_drains_on_stop():
    why = _docker_unavailable()
    if why:
        pytest.skip(f"docker not available: {why}")
    tag = f"sluice-test-deploy:{os.getpid()}"
    name = f"sluice-test-deploy-{os.getpid()}"
    run = lambda *argv, **kw: subprocess.run(["docker", *argv], capture_output=True, text=True,
                                             **kw)
    built = run("build", "-t", tag, str(ROOT), env={**os.environ, "DOCKER_BUILDKIT": "1"},
                timeout=1700)
    assert built.returncode == 0, built.stderr[-4000:]
    try:
        assert run("run", "--rm", "--entrypoint", "id", tag, "-u").stdout.strip() == \
            str(_dockerfile_uid())
        checked = run("run", "--rm", tag, "validate", "/etc/sluice/sluice.yaml")
        assert (checked.returncode, checked.stderr) == (0, "")
        started = run("run", "-d", "--name", name, "--read-only", "--cap-drop", "ALL",
                      "--security-opt", "no-new-privileges", tag)
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 60
        while run("exec", name, "sluice-admin", "ready").returncode != 0:
            assert time.monotonic() < deadline, run("logs", name).stderr[-4000:]
            time.sleep(0.5)
        healthz = run("exec", name, "python", "-c",
                      "import urllib.request as u; print(u.urlopen("
                      "'http://127.0.0.1:8080/healthz').read().decode())")
        assert healthz.stdout.strip() == "ok"
        # `docker stop` sends the image's STOPSIGNAL (SIGTERM): a clean drain exits 0
        assert run("stop", "-t", "40", name, timeout=90).returncode == 0
        exit_code = run("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert exit_code == "0", run("logs", name).stderr[-4000:]
    finally:
        run("rm", "-f", name)
        run("rmi", "-f", tag)
