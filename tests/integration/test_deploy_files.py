"""The shipped deploy files, checked offline: the Dockerfile (hadolint), the Swarm stack
(compose-spec schema), every Kubernetes manifest (kubernetes-validate --strict), and what no
schema knows: the node accepts every MINIODB_* variable they set, the ports, the probe paths
answer on a real node, the image's HEALTHCHECK and ENTRYPOINT run, the configs they mount exist.

No Docker daemon or cluster is needed; each validator is also shown to reject a broken copy,
so a pass means something.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml

from flight_server.config import load_settings, unknown_env_message
from tests.fixtures.deploy import (
    DEPLOY,
    DOCKERFILE,
    K8S,
    ROOT,
    STACK,
    dockerfile_instructions,
    dockerfile_json,
    k8s_documents,
    k8s_env,
    k8s_manifests,
    k8s_object,
    run_tool,
    stack,
    swarm_env,
)

PORTS = {"grpc": 8080, "rest": 8081, "metrics": 9090}


# ---- the validators ------------------------------------------------------------------------

def test_dockerfile_passes_hadolint(tmp_path):
    result = run_tool("hadolint", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert run_tool("hadolint", bad).returncode != 0


def test_stack_file_matches_the_compose_spec(tmp_path):
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", STACK)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = stack()
    broken["services"]["miniodb"]["deploy"]["replica"] = 3  # a typo of `replicas`
    bad = tmp_path / "docker-stack.yml"
    bad.write_text(yaml.safe_dump(broken))
    assert run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", bad).returncode != 0


@pytest.mark.parametrize("manifest", k8s_manifests(), ids=lambda p: p.name)
def test_k8s_manifest_is_valid_strict(manifest):
    result = run_tool("kubernetes-validate", "--strict", "--quiet", manifest)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path):
    docs = k8s_documents(K8S / "miniodb.yaml")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    sts["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}  # a typo
    bad = tmp_path / "miniodb.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    assert run_tool("kubernetes-validate", "--strict", "--quiet", bad).returncode != 0


# ---- structure no schema checks ------------------------------------------------------------

def test_kustomizations_list_every_manifest_and_the_shipped_redis_files():
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(base["resources"]) == sorted(p.name for p in k8s_manifests())
    top = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert top["resources"] == ["k8s"]
    generated = {}
    for gen in top["configMapGenerator"]:
        keys = {}
        for entry in gen["files"]:
            key, _, rel = entry.rpartition("=")
            path = (DEPLOY / rel).resolve()
            assert path.is_relative_to(DEPLOY) and path.is_file(), f"{rel} is not a file under deploy/"
            keys[key or path.name] = path
        generated[gen["name"]] = keys
    assert set(generated["redis-config"]) == {"redis.conf", "sentinel.conf"}
    # every ConfigMap and Secret a pod mounts or reads exists, with the keys it uses
    secrets = {d["metadata"]["name"]: d["stringData"] for d in k8s_documents(K8S / "secrets.yaml")}
    for path in k8s_manifests():
        for doc in k8s_documents(path):
            pod = doc["spec"].get("template", {}).get("spec") if doc["kind"] == "StatefulSet" else None
            for vol in (pod or {}).get("volumes", []):
                if "configMap" in vol:
                    assert vol["configMap"]["name"] in generated
                if "secret" in vol:
                    assert vol["secret"]["secretName"] in secrets
            for c in (pod or {}).get("containers", []):
                for var in c.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in secrets[ref["name"]], var


def test_stack_mounts_shipped_files_and_defines_what_it_references():
    s = stack()
    for name, cfg in s["configs"].items():
        assert (STACK.parent / cfg["file"]).resolve().is_file(), f"config {name}: {cfg['file']} is missing"
    wanted = {"haproxy.cfg", "redis.conf", "sentinel.conf", "prometheus.yml"}
    assert wanted <= {Path(c["file"]).name for c in s["configs"].values()}
    for name, svc in s["services"].items():
        for ref in svc.get("configs", []):
            assert ref["source"] in s["configs"], (name, ref)
        for ref in svc.get("secrets", []):
            assert (ref if isinstance(ref, str) else ref["source"]) in s["secrets"], (name, ref)
        for net in svc.get("networks", []):
            assert net in s["networks"], (name, net)
    haproxy_cfg = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    for name in s["services"]["loadbalancer"]["environment"]:
        assert f"${{{name}}}" in haproxy_cfg, f"haproxy.cfg does not read {name}"
    assert {"frontend", "backend", "data"} == set(s["networks"])
    assert all(n["driver"] == "overlay" for n in s["networks"].values())
    node = s["services"]["miniodb"]
    assert node["deploy"]["replicas"] == 3
    wal = next(v for v in node["volumes"] if v["target"] == "/var/lib/miniodb")
    assert "{{.Task.Slot}}" in s["volumes"][wal["source"]]["name"]  # one WAL volume per task slot
    assert "{{.Task.Slot}}" in node["environment"]["MINIODB_SERVER_NODE_ID"]
    minio = [n for n, svc in s["services"].items() if "minio{1...4}" in " ".join(svc.get("command", []))]
    assert sorted(minio) == ["minio1", "minio2", "minio3", "minio4"]
    sentinels = [n for n, svc in s["services"].items() if "redis-sentinel" in " ".join(svc.get("command", []))]
    addrs = node["environment"]["MINIODB_REDIS_SENTINEL_ADDRS"].split(",")
    assert len(sentinels) == 3 and sorted(a.split(":")[0] for a in addrs) == sorted(sentinels)


def test_redis_files_fit_both_deployments():
    """deploy/redis/*.conf are mounted unchanged by the stack and the k8s ConfigMap: the master
    they name must be a service in both, found by name, and each sentinel must announce itself."""
    lines = [ln.split() for ln in (DEPLOY / "redis" / "sentinel.conf").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    monitor = next(ln for ln in lines if ln[:2] == ["sentinel", "monitor"])
    name, host, port, quorum = monitor[2:6]
    assert (port, quorum) == ("6379", "2")
    assert ["sentinel", "resolve-hostnames", "yes"] in lines[:lines.index(monitor)], \
        "the master is named by host name: resolve-hostnames must come before the monitor line"
    # one shared file for three sentinels: a fixed announce-ip would make them one sentinel
    assert not any(ln[:2] == ["sentinel", "announce-ip"] for ln in lines)
    s = stack()
    assert host in s["services"] and k8s_object("Service", host)
    assert s["services"]["miniodb"]["environment"]["MINIODB_REDIS_SENTINEL_MASTER_NAME"] == name
    assert k8s_env(k8s_object("StatefulSet", "miniodb")["spec"]["template"], "miniodb")[
        "MINIODB_REDIS_SENTINEL_MASTER_NAME"] == name
    redis_conf = [ln.split() for ln in (DEPLOY / "redis" / "redis.conf").read_text().splitlines()]
    assert ["appendonly", "yes"] in redis_conf


def test_prometheus_scrapes_what_the_stack_runs():
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    s = stack()
    for rule in prom["rule_files"]:
        assert (DEPLOY / "prometheus" / rule).is_file()
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    sd = jobs["miniodb"]["dns_sd_configs"][0]
    assert sd["port"] == PORTS["metrics"]
    assert [n.removeprefix("tasks.") for n in sd["names"]] == ["miniodb"] and "miniodb" in s["services"]
    for target in jobs["haproxy"]["static_configs"][0]["targets"]:
        host, port = target.split(":")
        assert host in s["services"]
        assert int(port) in {p["target"] for p in s["services"][host]["ports"]}
    mounted = {c["target"] for c in s["services"]["prometheus"]["configs"]}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"} <= mounted


def test_ports_agree_everywhere():
    exposed = {int(p) for i, a in dockerfile_instructions() if i == "EXPOSE" for p in a.split()}
    assert exposed == set(PORTS.values())
    lb = stack()["services"]["loadbalancer"]
    assert set(PORTS.values()) <= {p["published"] for p in lb["ports"]}
    sts = k8s_object("StatefulSet", "miniodb")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == PORTS
    for svc in ("miniodb", "miniodb-headless"):
        ports = k8s_object("Service", svc)["spec"]["ports"]
        assert {p["name"]: p["port"] for p in ports} == PORTS


# ---- the node accepts the environment the deploy files give it ------------------------------

def _with_secret_files(env: dict[str, str], contents: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Point every *_FILE variable at a local file holding what the secret would hold."""
    out = dict(env)
    for name, value in env.items():
        if name.endswith("_FILE") and name.startswith("MINIODB_"):
            local = tmp_path / Path(value).name
            local.write_text(contents[Path(value).name])
            out[name] = str(local)
    return out


def _check_node_settings(env: dict[str, str]):
    assert unknown_env_message(env) is None
    s = load_settings(environ=env)
    assert (s.server.grpc_port, s.server.rest_port, s.server.metrics_port) == tuple(PORTS.values())
    assert s.server.auth_enabled and len(s.server.api_keys) == 2
    assert s.redis.sentinel.enabled and len(s.redis.sentinel.addrs) == 3
    assert s.coordinator.enabled and s.coordinator.mode == "distributed"
    assert s.storage.minio.endpoint == "minio:9000"
    # DuckDB accepts the memory limit and thread count as the node passes them
    con = duckdb.connect(config={"threads": s.query.threads, "memory_limit": s.query.memory_limit})
    con.close()
    return s


def test_stack_environment_is_known_to_the_node(tmp_path):
    svc = stack()["services"]["miniodb"]
    env = swarm_env(svc, slot=2)
    contents = {"miniodb_api_keys": "key-one\nkey-two\n", "minio_access_key": "minio-user\n",
                "minio_secret_key": "minio-secret-0123\n"}
    s = _check_node_settings(_with_secret_files(env, contents, tmp_path))
    assert s.server.node_id == "miniodb_miniodb-2"
    assert s.server.api_keys == ("key-one", "key-two")
    assert (s.storage.minio.access_key, s.storage.minio.secret_key) == ("minio-user", "minio-secret-0123")
    assert s.query.threads == 4


def test_k8s_environment_is_known_to_the_node(tmp_path):
    sts = k8s_object("StatefulSet", "miniodb")
    pod = sts["spec"]["template"]
    env = k8s_env(pod, "miniodb", pod_name="miniodb-1")
    secret = k8s_object("Secret", "miniodb-secrets")["stringData"]
    s = _check_node_settings(_with_secret_files(env, secret, tmp_path))
    assert s.server.node_id == "miniodb-1"
    assert s.server.advertise_host == "miniodb-1.miniodb-headless.miniodb.svc"
    limits = pod["spec"]["containers"][0]["resources"]
    # threads from the CPU limit, DuckDB's memory limit from the memory request (the downward API)
    assert s.query.threads == int(limits["limits"]["cpu"])
    assert s.query.memory_limit == "4096MiB" and limits["requests"]["memory"] == "4Gi"
    assert s.storage.minio.access_key == secret["minio-access-key"]


# ---- the image's commands and the probes, on a real node ------------------------------------

def test_entrypoint_command_parses():
    user = [a for i, a in dockerfile_instructions() if i == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    entry = dockerfile_json("ENTRYPOINT")
    assert entry[:2] == ["miniodb", "serve"]
    assert entry[entry.index("--data-dir") + 1] == "/var/lib/miniodb"
    assert any(i == "VOLUME" and "/var/lib/miniodb" in a for i, a in dockerfile_instructions())
    cmd = [sys.executable, "-m", "clients.cli", *entry[1:], "--help"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--data-dir" in result.stdout


def test_probes_and_healthcheck_answer_on_a_real_node(node):
    container = k8s_object("StatefulSet", "miniodb")["spec"]["template"]["spec"]["containers"][0]
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/api/v1/health/live"
    assert probes["readinessProbe"]["path"] == "/api/v1/health/ready"
    for kind, probe in probes.items():
        assert probe["port"] == "rest"
        r = httpx.get(node.rest + probe["path"], timeout=10)
        assert r.status_code == 200, (kind, r.text)
    # the Dockerfile's HEALTHCHECK, run as Docker would (the image's python is this one)
    check = dockerfile_json("HEALTHCHECK")
    assert check[0] == "python"
    port = node.rest.rsplit(":", 1)[1]
    env = {"MINIODB_SERVER_REST_PORT": port, "PATH": "/usr/bin:/bin"}
    assert subprocess.run([sys.executable, *check[1:]], env=env, timeout=30).returncode == 0
    assert node.terminate() == 0
    assert subprocess.run([sys.executable, *check[1:]], env=env, capture_output=True, timeout=30).returncode != 0
