"""The Helm chart, with the real helm: lint, render, and every rendered manifest validated
against the Kubernetes OpenAPI schemas of two releases (kubernetes-validate, offline)."""

import json

import kubernetes_validate
import pytest

from conftest import CHART, CUSTOM_KINDS, K8S_RELEASES, helm, kind, render

# Value sets that exercise every template branch.
VALUE_SETS = {
    "defaults": ([], ()),
    "secure-cluster": (
        [
            "config.bootstrap=kafka-0.kafka:9093\\,kafka-1.kafka:9093",
            "config.sasl_mechanism=SCRAM-SHA-512",
            "config.sasl_username=fairlead",
            "sasl.passwordSecret.name=kafka-sasl",
            "upstreamTls.secret.name=kafka-ca",
            "upstreamTls.secret.certKey=tls.crt",
            "upstreamTls.secret.keyKey=tls.key",
            "config.absorb_timeout_ms=10000",
            "config.max_frame_bytes=104857600",
            "config.topic_labels=true",
        ],
        (),
    ),
    "shared-proxy-and-operators": (
        [
            "config.bootstrap=kafka:9092",
            "proxy.enabled=true",
            "proxy.nodeIds={1,2,3}",
            "listenerTls.secret.name=proxy-tls",
            "webhook.failurePolicy=Fail",
        ],
        ("monitoring.coreos.com/v1", "cert-manager.io/v1"),
    ),
}


def test_helm_lint_is_clean():
    r = helm("lint", "--strict", str(CHART), "--set", "config.bootstrap=kafka:9092", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout, r.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
@pytest.mark.parametrize("release", K8S_RELEASES)
def test_every_rendered_manifest_is_valid_for_the_release(name, release):
    sets, apis = VALUE_SETS[name]
    docs = render(*sets, api_versions=apis, kube_version=release)
    checked = 0
    for d in docs:
        if d["kind"] in CUSTOM_KINDS:
            assert name == "shared-proxy-and-operators", f"{d['kind']} without its API installed"
            continue
        kubernetes_validate.validate(d, release, strict=True)
        checked += 1
    assert checked >= 5, [d["kind"] for d in docs]


def test_the_chart_refuses_clusters_without_native_sidecars():
    r = helm("template", "rel", str(CHART), "--kube-version", "1.28.0", check=False)
    assert r.returncode != 0 and "kubeVersion" in r.stderr, r.stderr


def test_webhook_tls_is_a_generated_ca_or_cert_manager():
    docs = render()
    secret = kind(docs, "Secret", "webhook-tls")
    mwc = kind(docs, "MutatingWebhookConfiguration")
    hook = mwc["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["rules"][0]["resources"] == ["pods"] and hook["rules"][0]["operations"] == ["CREATE"]
    assert hook["namespaceSelector"] == {"matchLabels": {"fairlead.io/injection": "enabled"}}
    own = {"key": "app.kubernetes.io/instance", "operator": "NotIn", "values": ["rel"]}
    assert own in hook["objectSelector"]["matchExpressions"], "the chart's own pods are excluded"

    cm = render(api_versions=("cert-manager.io/v1",))
    assert not [d for d in cm if d["kind"] == "Secret"], "cert-manager writes the Secret"
    cert = kind(cm, "Certificate")
    mwc = kind(cm, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"fairlead-system/{cert['metadata']['name']}"
    )
    assert "caBundle" not in mwc["webhooks"][0]["clientConfig"]
    assert cert["spec"]["secretName"] == kind(cm, "Deployment", "webhook")["spec"]["template"][
        "spec"]["volumes"][0]["secret"]["secretName"]


def test_the_sidecar_sets_only_options_fairlead_has_and_credentials_come_from_secrets(env_vars):
    sets, _ = VALUE_SETS["secure-cluster"]
    docs = render(*sets)
    sidecar = json.loads(kind(docs, "ConfigMap", "sidecar")["data"]["sidecar.json"])
    c = sidecar["container"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    unknown = set(env) - env_vars
    assert not unknown, f"variables fairlead --help does not list: {unknown}"
    assert env["FAIRLEAD_MAX_FRAME_BYTES"] == "104857600", "a number, not 1.048576e+08"
    assert env["FAIRLEAD_SASL_PASSWORD_FILE"] == "/etc/fairlead/sasl/password"
    assert "FAIRLEAD_SASL_PASSWORD" not in env
    assert env["FAIRLEAD_UPSTREAM_TLS"] == "true"
    assert env["FAIRLEAD_UPSTREAM_TLS_CA_FILE"] == "/etc/fairlead/upstream-tls/ca.crt"
    volumes = {v["name"]: v for v in sidecar["volumes"]}
    assert volumes["fairlead-sasl"]["secret"]["secretName"] == "kafka-sasl"
    assert volumes["fairlead-upstream-tls"]["secret"]["secretName"] == "kafka-ca"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/fairlead/sasl", "/etc/fairlead/upstream-tls"} <= mounts
    assert sidecar["app_bootstrap"] == "localhost:9092"


def test_the_shared_proxy_serves_a_port_per_broker_and_is_monitored():
    sets, apis = VALUE_SETS["shared-proxy-and-operators"]
    docs = render(*sets, api_versions=apis)
    svc = kind(docs, "Service", "proxy")
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports == {"bootstrap": 9092, "node-1": 9094, "node-2": 9095, "node-3": 9096,
                     "fairlead-admin": 9464}
    c = kind(docs, "Deployment", "proxy")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["FAIRLEAD_LISTEN"] == "0.0.0.0:9092"
    assert env["FAIRLEAD_ADVERTISED_HOST"] == "rel-fairlead-proxy.fairlead-system.svc"
    assert env["FAIRLEAD_LISTENER_TLS_CERT_FILE"] == "/etc/fairlead/listener-tls/tls.crt"
    assert {p["containerPort"] for p in c["ports"]} == set(ports.values())
    assert kind(docs, "PodMonitor")["spec"]["selector"]["matchLabels"] == {
        "fairlead.io/injected": "true"}
    assert kind(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "fairlead-admin"
    assert not [d for d in render() if d["kind"] in CUSTOM_KINDS], "no operator, no monitors"


def test_the_dashboard_configmap_is_the_grafana_dashboard():
    docs = render()
    cm = kind(docs, "ConfigMap", "dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART.parents[1] / "grafana" / "dashboards" / "fairlead.json").read_text())
    assert json.loads(cm["data"]["fairlead.json"]) == shipped
