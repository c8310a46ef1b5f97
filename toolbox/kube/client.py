"""A small Kubernetes REST client: JSON over one TLS connection per request.

Small on purpose: the procedures need get/create/replace/merge-patch on a handful of kinds
and the CSR approval subresource. It never reads proxy variables (the API is on the master or
behind the internal load balancer), and every request has a timeout.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from toolbox import log
from toolbox.context import Context
from toolbox.errors import ApiUnavailable, PreconditionFailed
from toolbox.host.runtime import wait_until
from toolbox.kube.config import KubeConfig, load

_log = log.get(__name__)

# Where each kind we touch lives (core kinds under /api/v1, the rest under /apis).
_KINDS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Secret": ("/api/v1", "secrets", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    # v1beta1: all OpenShift 4.3 (Kubernetes 1.16) serves; 1.19-1.21 serve it too.
    "CertificateSigningRequest": ("/apis/certificates.k8s.io/v1beta1",
                                  "certificatesigningrequests", False),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions",
                                 False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "KubeAPIServer": ("/apis/operator.openshift.io/v1", "kubeapiservers", False),
    "KubeControllerManager": ("/apis/operator.openshift.io/v1", "kubecontrollermanagers", False),
    "KubeScheduler": ("/apis/operator.openshift.io/v1", "kubeschedulers", False),
    "Infrastructure": ("/apis/config.openshift.io/v1", "infrastructures", False),
}


def path_of(kind: str, name: str | None = None, namespace: str | None = None) -> str:
    prefix, plural, namespaced = _KINDS[kind]
    parts = [prefix]
    if namespaced:
        parts += ["namespaces", quote(namespace or "default", safe="")]
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    return "/".join(parts)


class ObjectStore:
    """Secrets and configmaps of the API as a `pki.rotation.Store`."""

    def __init__(self, client: KubeClient):
        self.client = client

    def get(self, kind: str, ref: Any) -> dict[str, Any] | None:
        return self.client.get(path_of(kind, ref.name, ref.namespace))

    def put(self, obj: dict[str, Any]) -> None:
        self.client.apply(obj)


def secret_value(obj: dict[str, Any], key: str) -> bytes:
    """One data key of a Secret, decoded; b"" when absent."""
    return base64.b64decode((obj.get("data") or {}).get(key) or "")


def configmap_value(obj: dict[str, Any], key: str) -> bytes:
    """One data key of a ConfigMap; b"" when absent."""
    return str((obj.get("data") or {}).get(key) or "").encode()


class KubeClient:
    def __init__(self, config: KubeConfig, *, timeout: float = 30.0):
        self.config = config
        self.timeout = timeout
        self._tls = self._tls_context(config)

    @staticmethod
    def _tls_context(config: KubeConfig) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if config.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif config.ca_pem is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_verify_locations(cadata=config.ca_pem.decode())
        if config.client_cert_pem and config.client_key_pem:
            # ssl only loads a client pair from files: a private directory, gone at once.
            with tempfile.TemporaryDirectory(prefix="ocp-recovery-kube-") as private:
                pair = Path(private) / "client.pem"
                fd = os.open(pair, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(config.client_cert_pem + b"\n" + config.client_key_pem)
                context.load_cert_chain(pair)
        return context

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        host, port = self.config.host_port
        headers = {"Accept": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        connection = http.client.HTTPSConnection(host, port, context=self._tls,
                                                 timeout=self.timeout)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiUnavailable(
                f"{method} {self.config.server}{path} failed: {_reason(exc)}",
                next_step=f"check that the API server at {self.config.server} runs and that "
                f"the kubeconfig {self.config.source} is the right one") from exc
        finally:
            connection.close()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"message": raw[:200].decode(errors="replace")}
        if response.status in (401, 403):
            raise ApiUnavailable(
                f"{method} {path}: the API at {self.config.server} answered "
                f"{response.status} {answer.get('message', '')}".rstrip(),
                next_step="use a kubeconfig with cluster-admin (the recovery one: "
                "`ocp-recovery recovery-apiserver create` prints it)")
        return response.status, answer

    def _checked(self, method: str, path: str, body: Any = None, *,
                 allow: tuple[int, ...] = (), content_type: str = "application/json"
                 ) -> dict[str, Any] | None:
        status, answer = self.request(method, path, body, content_type=content_type)
        if status in allow:
            return None
        if status >= 300:
            raise ApiUnavailable(f"{method} {path} answered {status}: "
                                 f"{answer.get('message', answer)}")
        return answer

    def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        return self._checked("GET", path, allow=(404,))

    def list(self, path: str) -> list[dict[str, Any]]:
        answer = self._checked("GET", path) or {}
        return list(answer.get("items") or [])

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._checked("POST", path, obj) or {}

    def replace(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._checked("PUT", path, obj) or {}

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._checked("PATCH", path, patch,
                             content_type="application/merge-patch+json") or {}

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or replace the one of that name (keeping its resourceVersion)."""
        meta = obj["metadata"]
        item_path = path_of(obj["kind"], meta["name"], meta.get("namespace"))
        current = self.get(item_path)
        if current is None:
            return self.create(path_of(obj["kind"], None, meta.get("namespace")), obj)
        merged = {**obj, "metadata": {**meta, "resourceVersion":
                                      current["metadata"]["resourceVersion"]}}
        return self.replace(item_path, merged)

    def answers(self) -> bool:
        """True when the API server says it is ready."""
        try:
            status, _ = self.request("GET", "/readyz")
        except ApiUnavailable:
            return False
        return status == 200

    def wait_ready(self, timeout: float, *, next_step: str) -> None:
        wait_until(self.answers, timeout=timeout,
                   what=f"the API server at {self.config.server} to answer /readyz",
                   next_step=next_step)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the server's certificate was refused ({exc.verify_message})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    return f"{type(exc).__name__}: {exc}"


def connect(ctx: Context) -> KubeClient:
    """The API the context's kubeconfig names; by default the recovery API server's. A
    given path is the host's; failing that, this machine's (a file mounted into the
    toolbox container, or the sandbox's admin kubeconfig)."""
    path = ctx.paths.recovery_kubeconfig
    if ctx.kubeconfig:
        path = ctx.paths.host(ctx.kubeconfig)
        local = Path(ctx.kubeconfig)
        if not path.exists() and local.is_absolute() and local.exists():
            return KubeClient(load(local), timeout=ctx.timeouts.dial * 6)
    if not path.exists():
        raise PreconditionFailed(
            f"no kubeconfig: {ctx.paths.shown(path)} does not exist",
            next_step="ocp-recovery recovery-apiserver create (or pass --kubeconfig / set "
            "KUBECONFIG to a cluster-admin kubeconfig)")
    return KubeClient(load(path, ctx.paths.host), timeout=ctx.timeouts.dial * 6)
