"""`fairlead webhook` as the API server sees it: AdmissionReviews over TLS (the serving
certificate the chart generates, verified against the chart's caBundle), the sidecar file the
chart renders, and the answers' JSON Patches applied with a real RFC 6902 implementation
(jsonpatch) to pods built with the official Kubernetes client's types; the results are read
back into those types and validated against the Kubernetes schemas."""

import base64
import copy
import http.client
import json
import socket
import ssl
import subprocess
import time

import jsonpatch
import kubernetes_validate
import pytest
from kubernetes.client import (
    ApiClient,
    V1Container,
    V1EnvVar,
    V1EnvVarSource,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    V1SecretKeySelector,
    V1Volume,
    V1EmptyDirVolumeSource,
)

from conftest import FAIRLEAD, K8S_RELEASES, kind, render

API = ApiClient()
CHART_SETS = [
    "config.bootstrap=kafka-0.kafka:9092\\,kafka-1.kafka:9092",
    "config.sasl_mechanism=SCRAM-SHA-512",
    "config.sasl_username=fairlead",
    "sasl.passwordSecret.name=kafka-sasl",
    "webhook.url=https://127.0.0.1:8443/mutate",
]


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    """The webhook, serving with the chart's certificate and sidecar."""
    d = tmp_path_factory.mktemp("webhook")
    docs = render(*CHART_SETS)
    secret = kind(docs, "Secret", "webhook-tls")["data"]
    for k in ("tls.crt", "tls.key", "ca.crt"):
        (d / k).write_bytes(base64.b64decode(secret[k]))
    (d / "sidecar.json").write_text(kind(docs, "ConfigMap", "sidecar")["data"]["sidecar.json"])
    ca_bundle = kind(docs, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    (d / "bundle.crt").write_bytes(base64.b64decode(ca_bundle))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(d / "webhook.log", "w")
    proc = subprocess.Popen(
        [FAIRLEAD, "webhook", "--listen", f"127.0.0.1:{port}",
         "--tls-cert-file", str(d / "tls.crt"), "--tls-key-file", str(d / "tls.key"),
         "--sidecar-file", str(d / "sidecar.json")],
        stdout=log, stderr=subprocess.STDOUT)
    # What the API server does: verify the serving certificate against the caBundle.
    ctx = ssl.create_default_context(cafile=str(d / "bundle.crt"))
    hook = Webhook(port, ctx, proc, d / "webhook.log")
    deadline = time.time() + 15
    while True:
        try:
            assert hook.request("GET", "/livez")[0] == 200
            break
        except (OSError, ssl.SSLError):
            assert proc.poll() is None, (d / "webhook.log").read_text()
            assert time.time() < deadline, "the webhook never answered"
            time.sleep(0.1)
    yield hook
    proc.terminate()
    assert proc.wait(10) == 0, "stops cleanly on SIGTERM"


class Webhook:
    def __init__(self, port, ctx, proc, log):
        self.port, self.ctx, self.proc, self.log = port, ctx, proc, log

    def request(self, method, path, body=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        c.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out = (r.status, r.read())
        c.close()
        return out

    def review(self, obj, kind_="Pod", operation="CREATE", raw=None):
        body = raw if raw is not None else json.dumps({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": kind_},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "team-a",
                "operation": operation,
                "object": obj,
            },
        }).encode()
        status, out = self.request("POST", "/mutate", body)
        assert status == 200, out
        review = json.loads(out)
        assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
        assert self.proc.poll() is None, "the webhook died:\n" + self.log.read_text()
        return review["response"]

    def inject(self, pod):
        """The pod (a dict) after the webhook's patch, and the patch."""
        resp = self.review(pod)
        assert resp["allowed"] is True, resp
        if "patch" not in resp:
            return pod, None
        assert resp["patchType"] == "JSONPatch"
        patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(resp["patch"])))
        return patch.apply(copy.deepcopy(pod)), patch


def pod(annotations=None, init=None, env=None, volumes=None):
    """A pod of a Deployment (generateName, no name), as the official client builds it."""
    p = V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(generate_name="orders-7d9c-", namespace="team-a",
                              annotations=annotations, labels={"app": "orders"}),
        spec=V1PodSpec(
            init_containers=init,
            containers=[
                V1Container(name="app", image="registry.example.com/orders:1", env=env),
                V1Container(name="metrics-agent", image="registry.example.com/agent:1"),
            ],
            volumes=volumes,
        ),
    )
    return API.sanitize_for_serialization(p)


def typed(d):
    """A dict read back into the official V1Pod type (as a client reads an API answer)."""
    return API.deserialize(json.dumps(d), "V1Pod", "application/json")


def valid(d):
    for release in K8S_RELEASES:
        kubernetes_validate.validate(d, release, strict=True)


INJECT = {"fairlead.io/inject": "true", "fairlead.io/bootstrap-env": "KAFKA_BOOTSTRAP_SERVERS"}


def test_an_annotated_pod_gets_fairlead_as_a_native_sidecar(webhook):
    before = pod(INJECT, env=[V1EnvVar(name="KAFKA_BOOTSTRAP_SERVERS", value="kafka:9092"),
                              V1EnvVar(name="OTHER", value="x")])
    after, _ = webhook.inject(before)
    valid(after)
    p = typed(after)
    side = p.spec.init_containers[0]
    assert side.name == "fairlead" and side.restart_policy == "Always"
    assert side.startup_probe.http_get.path == "/startupz"
    assert side.liveness_probe.http_get.path == "/livez"
    assert side.readiness_probe.http_get.path == "/readyz"
    assert side.resources.requests["memory"] and side.resources.limits["memory"]
    env = {e.name: e.value for e in side.env}
    assert env["FAIRLEAD_BOOTSTRAP"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    # Defaults never weakened: loopback listener, non-root, read-only root, no credentials.
    assert env["FAIRLEAD_LISTEN"].startswith("127.0.0.1:")
    sc = side.security_context
    assert sc.run_as_non_root and sc.read_only_root_filesystem
    assert not sc.allow_privilege_escalation and sc.capabilities.drop == ["ALL"]
    assert "FAIRLEAD_SASL_PASSWORD" not in env
    assert env["FAIRLEAD_SASL_PASSWORD_FILE"].startswith("/etc/fairlead/sasl/")
    assert [v.secret.secret_name for v in p.spec.volumes] == ["kafka-sasl"]
    # The application bootstraps at fairlead; its other variables and containers are as they were.
    app = {e.name: e.value for e in p.spec.containers[0].env}
    assert app == {"KAFKA_BOOTSTRAP_SERVERS": "localhost:9092", "OTHER": "x"}
    assert p.spec.containers[1].env == [V1EnvVar(name="KAFKA_BOOTSTRAP_SERVERS",
                                                 value="localhost:9092")]
    assert p.metadata.annotations["fairlead.io/status"] == "injected"
    assert p.metadata.labels == {"app": "orders", "fairlead.io/injected": "true"}


def test_existing_init_containers_and_volumes_are_kept_after_fairlead(webhook):
    before = pod(INJECT,
                 init=[V1Container(name="migrate", image="registry.example.com/migrate:1")],
                 env=[V1EnvVar(name="KAFKA_BOOTSTRAP_SERVERS", value_from=V1EnvVarSource(
                     secret_key_ref=V1SecretKeySelector(name="kafka", key="bootstrap")))],
                 volumes=[V1Volume(name="scratch", empty_dir=V1EmptyDirVolumeSource())])
    after, _ = webhook.inject(before)
    valid(after)
    p = typed(after)
    assert [c.name for c in p.spec.init_containers] == ["fairlead", "migrate"]
    assert [v.name for v in p.spec.volumes] == ["scratch", "fairlead-sasl"]
    e = p.spec.containers[0].env[0]
    assert (e.name, e.value, e.value_from) == ("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", None)


def test_injection_is_idempotent_and_other_pods_are_untouched(webhook):
    once, _ = webhook.inject(pod(INJECT))
    twice, patch = webhook.inject(once)
    assert patch is None and twice == once, "an injected pod is left as it is"
    for untouched in (pod(), pod({"fairlead.io/inject": "false"}), pod({"other": "true"})):
        assert webhook.review(untouched) == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                                             "allowed": True}
    # Not a pod creation: allowed, unchanged.
    assert "patch" not in webhook.review(pod(INJECT), operation="UPDATE")
    assert "patch" not in webhook.review({"metadata": {}}, kind_="ConfigMap")


def test_annotations_configure_the_sidecar_without_credentials(webhook):
    after, _ = webhook.inject(pod({**INJECT, "fairlead.io/bootstrap": "other-kafka:9092",
                                   "fairlead.io/config-map": "orders-fairlead",
                                   "config.fairlead.io/absorb_timeout_ms": "8000"}))
    valid(after)
    p = typed(after)
    env = {e.name: e.value for e in p.spec.init_containers[0].env}
    assert env["FAIRLEAD_BOOTSTRAP"] == "other-kafka:9092"
    assert env["FAIRLEAD_ABSORB_TIMEOUT_MS"] == "8000"
    assert env["FAIRLEAD_CONFIG"] == "/etc/fairlead/pod/fairlead.toml"
    assert any(v.config_map and v.config_map.name == "orders-fairlead" for v in p.spec.volumes)
    for k, v in [("config.fairlead.io/sasl_password", "hunter2"),
                 ("config.fairlead.io/listen", "0.0.0.0:9092"),
                 ("config.fairlead.io/no_such_option", "1")]:
        resp = webhook.review(pod({**INJECT, k: v}))
        assert resp["allowed"] is False and "not an option a pod may set" in resp["status"]["message"]


@pytest.mark.parametrize("body, says", [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "expected an AdmissionReview"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                 "request": {"uid": "x"}}).encode(), "admission.k8s.io/v1"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
     "no `request`"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"kind": {"kind": "Pod"}}}).encode(), "no `uid`"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"uid": "u", "kind": {"group": "", "kind": "Pod"},
                             "operation": "CREATE", "object": {"spec": "nope"}}}).encode(),
     "no spec.containers"),
])
def test_malformed_reviews_are_refused_with_a_clear_message_never_a_crash(webhook, body, says):
    resp = webhook.review(None, raw=body)
    assert resp["allowed"] is False
    assert resp["status"]["code"] == 400
    assert says in resp["status"]["message"], resp


def test_http_the_api_server_does_not_send_is_refused(webhook):
    assert webhook.request("GET", "/mutate")[0] == 404
    assert webhook.request("DELETE", "/mutate")[0] == 405
    assert webhook.request("GET", "/readyz")[0] == 200
