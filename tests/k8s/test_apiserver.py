"""End to end with a real API server: etcd and kube-apiserver (built from their Go modules by
tests/k8s/setup), the chart installed with helm, `fairlead webhook` serving with the
certificate and sidecar the chart created (called by URL: nothing here runs pods, there is no
kubelet, scheduler or kube-proxy), and pods created through the API server's admission chain."""

import base64
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CHART, FAIRLEAD, REPO

BIN = REPO / ".cache" / "k8s" / "bin"
TOKEN = "fairlead-e2e-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, ok, timeout=60, proc=None, log=None):
    deadline = time.time() + timeout
    while not ok():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: exited\n{Path(log).read_text()[-4000:]}")
        assert time.time() < deadline, f"{what}: not up in {timeout}s\n" + (
            Path(log).read_text()[-4000:] if log else "")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("apiserver")
    procs = []

    def start(name, args):
        log = d / f"{name}.log"
        p = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p, log

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd, etcd_log = start("etcd", [
        str(BIN / "etcd"), "--data-dir", str(d / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
        "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
        "--log-level", "warn"])
    subprocess.run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"],
                   check=True, capture_output=True)
    (d / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
    api, api_log = start("kube-apiserver", [
        str(BIN / "kube-apiserver"),
        "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
        "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
        "--secure-port", str(api_port), "--cert-dir", str(d / "certs"),
        "--service-account-issuer", "https://kubernetes.default.svc",
        "--service-account-key-file", str(d / "sa.key"),
        "--service-account-signing-key-file", str(d / "sa.key"),
        "--token-auth-file", str(d / "tokens.csv"),
        "--authorization-mode", "RBAC",
        "--service-cluster-ip-range", "10.96.0.0/24",
        "--endpoint-reconciler-type", "none",
        # No controller-manager creates default service accounts: do not require them.
        "--disable-admission-plugins", "ServiceAccount"])
    kubeconfig = d / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {
            "server": f"https://127.0.0.1:{api_port}", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
    }))

    from kubernetes import client, config
    api_client = config.new_client_from_config(str(kubeconfig))
    core = client.CoreV1Api(api_client)

    def api_ready():
        try:
            core.list_namespace()
            return True
        except Exception:
            return False

    wait("kube-apiserver", api_ready, timeout=120, proc=api, log=api_log)
    assert etcd.poll() is None, etcd_log.read_text()
    yield {"dir": d, "kubeconfig": kubeconfig, "core": core, "client": client,
           "api_client": api_client}
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def helm(c, *args):
    env = {**os.environ, "KUBECONFIG": str(c["kubeconfig"])}
    return subprocess.run(["helm", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def installed(cluster):
    c = cluster
    port = free_port()
    r = helm(c, "install", "rel", str(CHART), "-n", "fairlead-system", "--create-namespace",
             "--set", "config.bootstrap=kafka-0.kafka:9092",
             "--set", "sasl.passwordSecret.name=kafka-sasl",
             "--set", "config.sasl_mechanism=PLAIN", "--set", "config.sasl_username=u",
             "--set", f"webhook.url=https://127.0.0.1:{port}/mutate",
             "--set", "webhook.failurePolicy=Ignore")
    assert r.returncode == 0, r.stdout + r.stderr
    core = c["core"]
    secret = core.read_namespaced_secret("rel-fairlead-webhook-tls", "fairlead-system")
    d = c["dir"]
    for k in ("tls.crt", "tls.key"):
        (d / k).write_bytes(base64.b64decode(secret.data[k]))
    sidecar = core.read_namespaced_config_map("rel-fairlead-webhook-sidecar", "fairlead-system")
    (d / "sidecar.json").write_text(sidecar.data["sidecar.json"])
    log = d / "webhook.log"
    hook = subprocess.Popen(
        [FAIRLEAD, "webhook", "--listen", f"127.0.0.1:{port}",
         "--tls-cert-file", str(d / "tls.crt"), "--tls-key-file", str(d / "tls.key"),
         "--sidecar-file", str(d / "sidecar.json")],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            return False

    wait("fairlead webhook", listening, proc=hook, log=log)
    client = c["client"]
    for ns, labels in [("team-a", {"fairlead.io/injection": "enabled"}), ("team-b", None)]:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=ns, labels=labels)))
    yield {**c, "webhook": hook, "webhook_log": log}
    hook.terminate()
    hook.wait(10)


def create_pod(c, ns, name, annotations=None):
    client = c["client"]
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations),
        spec=client.V1PodSpec(containers=[client.V1Container(
            name="app", image="registry.example.com/app:1",
            env=[client.V1EnvVar(name="KAFKA_BOOTSTRAP_SERVERS", value="kafka:9092")])]))
    return c["core"].create_namespaced_pod(ns, pod)


INJECT = {"fairlead.io/inject": "true", "fairlead.io/bootstrap-env": "KAFKA_BOOTSTRAP_SERVERS"}


def test_the_api_server_injects_annotated_pods_in_selected_namespaces(installed):
    p = create_pod(installed, "team-a", "orders", INJECT)
    assert [c.name for c in p.spec.init_containers] == ["fairlead"]
    side = p.spec.init_containers[0]
    assert side.restart_policy == "Always"
    assert side.startup_probe.http_get.path == "/startupz"
    assert side.security_context.read_only_root_filesystem
    assert p.spec.containers[0].env[0].value == "localhost:9092"
    assert p.metadata.labels["fairlead.io/injected"] == "true"
    assert "injected" in installed["webhook_log"].read_text()

    plain = create_pod(installed, "team-a", "plain")
    assert not plain.spec.init_containers
    elsewhere = create_pod(installed, "team-b", "orders", INJECT)
    assert not elsewhere.spec.init_containers, "namespace not selected"


def test_a_bad_annotation_is_refused_by_the_api_server_with_the_webhooks_message(installed):
    from kubernetes.client.exceptions import ApiException
    with pytest.raises(ApiException) as e:
        create_pod(installed, "team-a", "bad",
                   {**INJECT, "config.fairlead.io/sasl_password": "hunter2"})
    assert "fairlead sidecar injector" in e.value.body
    assert "not an option a pod may set" in e.value.body


def test_upgrade_keeps_the_certificate_and_uninstall_removes_the_webhook(installed):
    c = installed
    core = c["core"]
    before = core.read_namespaced_secret("rel-fairlead-webhook-tls", "fairlead-system").data
    r = helm(c, "upgrade", "rel", str(CHART), "-n", "fairlead-system", "--reuse-values",
             "--set", "config.absorb_timeout_ms=9000")
    assert r.returncode == 0, r.stdout + r.stderr
    after = core.read_namespaced_secret("rel-fairlead-webhook-tls", "fairlead-system").data
    assert after == before, "the generated CA and certificate survive an upgrade"
    sidecar = json.loads(core.read_namespaced_config_map(
        "rel-fairlead-webhook-sidecar", "fairlead-system").data["sidecar.json"])
    assert {"name": "FAIRLEAD_ABSORB_TIMEOUT_MS", "value": "9000"} in sidecar["container"]["env"]

    # The webhook down, failurePolicy Ignore: the pod is created, without fairlead.
    c["webhook"].terminate()
    c["webhook"].wait(10)
    p = create_pod(c, "team-a", "while-down", INJECT)
    assert not p.spec.init_containers
    assert p.spec.containers[0].env[0].value == "kafka:9092"

    r = helm(c, "uninstall", "rel", "-n", "fairlead-system")
    assert r.returncode == 0, r.stdout + r.stderr
    adm = c["client"].AdmissionregistrationV1Api(c["api_client"])
    names = [w.metadata.name for w in adm.list_mutating_webhook_configuration().items]
    assert "rel-fairlead-webhook" not in names
