"""Guide 3.4 step 6: the kubelet's bootstrap kubeconfig, from the node-bootstrapper token.

`recover-kubeconfig.sh` (reference spec §9): the internal API URL of the Infrastructure
resource (not the external one, BZ 1738857), the token and CA of the node-bootstrapper
secret. Ours first proves the kubeconfig works (TLS verifies and the token authenticates)
before it is printed or installed, and `--install` writes what the guide copies by hand:
`/etc/kubernetes/kubeconfig` (the old one kept), `/etc/kubernetes/kubelet-ca.crt` and
`/run/machine-config-daemon-force`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import yaml

from toolbox import log
from toolbox.context import Context
from toolbox.errors import ApiUnavailable, PreconditionFailed
from toolbox.host.files import atomic_write, move_path
from toolbox.host.lock import host_lock
from toolbox.kube import config as kubeconfig
from toolbox.kube.client import KubeClient, configmap_value, secret_value

_log = log.get(__name__)

BOOTSTRAPPER_NAMESPACE = "openshift-machine-config-operator"
TOKEN_SECRET = "node-bootstrapper-token"
KUBELET_CA = ("openshift-kube-apiserver-operator", "kube-apiserver-to-kubelet-client-ca")
KUBELET_CA_FILE = "/etc/kubernetes/kubelet-ca.crt"
MCD_FORCE_FILE = "/run/machine-config-daemon-force"  # the MCD re-applies its config


@dataclass(frozen=True)
class Recovered:
    kubeconfig: bytes
    kubelet_ca: bytes
    server: str
    checked: str           # what was proven before it was shown or installed
    installed: list[str]
    kept: list[str]


def build(client: KubeClient, *, check: bool = True) -> Recovered:
    infra = client.get("Infrastructure", "cluster") or {}
    server = str((infra.get("status") or {}).get("apiServerInternalURI") or "")
    if not server:
        raise PreconditionFailed("infrastructures.config.openshift.io/cluster has no "
                                 "status.apiServerInternalURI", state="unchanged",
                                 next_step="check the kubeconfig points at this cluster")
    secret = client.get("Secret", TOKEN_SECRET, BOOTSTRAPPER_NAMESPACE)
    if secret is None or not secret_value(secret, "token") or \
            not secret_value(secret, "ca.crt"):
        raise PreconditionFailed(f"secret {BOOTSTRAPPER_NAMESPACE}/{TOKEN_SECRET} is missing "
                                 "or has no token/ca.crt", state="unchanged")
    token, ca = secret_value(secret, "token").decode(), secret_value(secret, "ca.crt")
    kubelet_ca = configmap_value(
        client.get("ConfigMap", KUBELET_CA[1], KUBELET_CA[0]) or {}, "ca-bundle.crt")
    if not kubelet_ca:
        raise PreconditionFailed(f"configmap {KUBELET_CA[0]}/{KUBELET_CA[1]} has no "
                                 "ca-bundle.crt", state="unchanged",
                                 next_step="ocp-recovery regenerate-certificates")
    rendered = kubeconfig.render(cluster=client.cluster_name, server=server,
                                 user="kubelet", context="kubelet", ca_pem=ca, token=token)
    checked = "not checked (--no-check)"
    if check:
        check_bootstrap(rendered, client.timeout)
        checked = (f"TLS to {server} verified with the secret's CA, and the token listed "
                   "CSRs there")
    return Recovered(rendered, kubelet_ca, server, checked, [], [])


def check_bootstrap(rendered: bytes, timeout: float) -> None:
    """The kubelet's first call with the kubeconfig it will be given: list CSRs. TLS must
    verify with the secret's CA and the token must be accepted."""
    probe = KubeClient(yaml.safe_load(rendered), "the recovered kubeconfig", timeout=timeout)
    try:
        probe.list("CertificateSigningRequest", limit=1)
    except ApiUnavailable as exc:
        raise ApiUnavailable(
            f"the recovered kubeconfig does not work: {exc.what}", state="unchanged: "
            "nothing was written",
            next_step="if TLS was refused, the API at that URL does not serve the new "
            "certificates yet: finish regenerate-certificates and wait for kube-apiserver "
            "to restart; if the token was refused (401, 403), the node-bootstrapper secret "
            "is not this cluster's; then run this again") from exc
    finally:
        probe.close()


def install(ctx: Context, recovered: Recovered) -> Recovered:
    """Write the three host files; an existing kubeconfig is kept beside the new one."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H-%M-%S")
    kept = []
    with host_lock(ctx.paths.state_dir, "kubeconfig recover --install"):
        target = ctx.paths.bootstrap_kubeconfig
        if target.exists() and target.read_bytes() != recovered.kubeconfig:
            backup = target.with_name(f"{target.name}.{stamp}")
            move_path(target, backup)
            kept.append(ctx.paths.shown(backup))
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, recovered.kubeconfig, 0o600)
        kubelet_ca = ctx.paths.host(KUBELET_CA_FILE)
        atomic_write(kubelet_ca, recovered.kubelet_ca, 0o644)
        force = ctx.paths.host(MCD_FORCE_FILE)
        force.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(force, b"", 0o644)
    installed = [ctx.paths.shown(path) for path in (target, kubelet_ca, force)]
    _log.info("kubeconfig.installed", files=installed, kept=kept)
    return Recovered(recovered.kubeconfig, recovered.kubelet_ca, recovered.server,
                     recovered.checked, installed, kept)
