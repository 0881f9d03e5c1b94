"""Shared by the Kubernetes tests: the chart rendered by the real helm, fairlead's binary."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "docker" / "helm" / "fairlead"
FAIRLEAD = os.environ.get("FAIRLEAD_BIN", str(REPO / "target" / "debug" / "fairlead"))

# The oldest release the chart supports (native sidecars, Chart.yaml kubeVersion) and the
# newest whose schemas kubernetes-validate bundles.
K8S_RELEASES = ["1.29.0", "1.37.0"]

# Custom resources of the cert-manager and Prometheus operators: no Kubernetes release has
# their schemas; the chart creates them only when their APIs are installed.
CUSTOM_KINDS = {"Certificate", "Issuer", "PodMonitor", "ServiceMonitor"}


def helm(*args, check=True):
    return subprocess.run(["helm", *args], capture_output=True, text=True, check=check)


def render(*sets, api_versions=(), kube_version="1.33.0", namespace="fairlead-system"):
    """`helm template` with --set pairs; the manifests as a list of dicts."""
    args = ["template", "rel", str(CHART), "--namespace", namespace, "--kube-version", kube_version]
    for s in sets:
        args += ["--set", s]
    for a in api_versions:
        args += ["--api-versions", a]
    out = helm(*args)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kind(docs, k, name_part=""):
    found = [d for d in docs if d["kind"] == k and name_part in d["metadata"]["name"]]
    assert found, f"no {k} {name_part!r} in {[ (d['kind'], d['metadata']['name']) for d in docs]}"
    return found[0]


def fairlead_env_vars():
    """The FAIRLEAD_* variables fairlead's own --help lists: the proxy's options."""
    out = subprocess.run([FAIRLEAD, "--help"], capture_output=True, text=True, check=True).stdout
    names = set(re.findall(r"\[env: (FAIRLEAD_[A-Z0-9_]+)=", out))
    assert len(names) > 20, out
    return names


@pytest.fixture(scope="session")
def env_vars():
    return fairlead_env_vars()
