"""The Kubernetes API through the `kubernetes` package, loaded from a host-path kubeconfig.

The kubeconfig's file names are resolved on the host first (toolbox.kube.config.read); the
package's own loader then picks the context and credentials. Objects cross this module as the
API's JSON (dicts): the procedures and the rotation code read them that way. Every failure,
transport or HTTP, becomes `ApiUnavailable` (exit 12) saying the verb, the resource, the
server and the answer. It never reads proxy variables (the API is on the master or behind the
internal load balancer), never retries on its own (the waits do), and every request has a
timeout.

`kubernetes` is imported only inside the functions that talk to the API: importing
`kubernetes.client` takes 0.25-0.4 s here (median 0.33 s, `python -X importtime`, this
shared 2-core machine), which `ocp-recovery --version` and `backup` must not pay.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
import socket
import ssl
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from toolbox import log
from toolbox.context import Context
from toolbox.errors import ApiUnavailable, InvalidInput, PreconditionFailed
from toolbox.kube import config as kubeconfig
from toolbox.waiting import wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

_log = log.get(__name__)

# Kinds with a typed API: (class in kubernetes.client, its methods' suffix, resource, namespaced).
_TYPED = {
    "Namespace": ("CoreV1Api", "namespace", "namespaces", False),
    "Secret": ("CoreV1Api", "namespaced_secret", "secrets", True),
    "ConfigMap": ("CoreV1Api", "namespaced_config_map", "configmaps", True),
    "ServiceAccount": ("CoreV1Api", "namespaced_service_account", "serviceaccounts", True),
    "CertificateSigningRequest": ("CertificatesV1Api", "certificate_signing_request",
                                  "certificatesigningrequests.certificates.k8s.io", False),
    "CustomResourceDefinition": ("ApiextensionsV1Api", "custom_resource_definition",
                                 "customresourcedefinitions.apiextensions.k8s.io", False),
    "ClusterRoleBinding": ("RbacAuthorizationV1Api", "cluster_role_binding",
                           "clusterrolebindings.rbac.authorization.k8s.io", False),
    "Node": ("CoreV1Api", "node", "nodes", False),
    "Pod": ("CoreV1Api", "namespaced_pod", "pods", True),
    "Job": ("BatchV1Api", "namespaced_job", "jobs.batch", True),
    "PersistentVolume": ("CoreV1Api", "persistent_volume", "persistentvolumes", False),
}
# OpenShift's kinds, cluster-scoped custom resources: (group, version, plural).
_CUSTOM = {
    "Infrastructure": ("config.openshift.io", "v1", "infrastructures"),
    "KubeAPIServer": ("operator.openshift.io", "v1", "kubeapiservers"),
    "KubeControllerManager": ("operator.openshift.io", "v1", "kubecontrollermanagers"),
    "KubeScheduler": ("operator.openshift.io", "v1", "kubeschedulers"),
}
# OpenShift 4.3 is Kubernetes 1.16: it serves CSRs only as v1beta1 (v1 came with 1.19, and
# the `kubernetes` package has no typed API for v1beta1 any more). Used when v1 is not served.
_CSR_V1BETA1 = ("certificates.k8s.io", "v1beta1", "certificatesigningrequests")
_PLUGINS = ("exec", "auth-provider")
_VERBS = {"read": "GET", "list": "LIST", "create": "POST", "replace": "PUT", "patch": "PATCH",
          "delete": "DELETE"}


class ObjectStore:
    """Secrets and configmaps of the API as a `pki.rotation.Store`."""

    def __init__(self, client: KubeClient):
        self.client = client

    def get(self, kind: str, ref: Any) -> dict[str, Any] | None:
        return self.client.get(kind, ref.name, ref.namespace)

    def put(self, obj: dict[str, Any]) -> None:
        self.client.apply(obj)


def secret_value(obj: dict[str, Any], key: str) -> bytes:
    """One data key of a Secret, decoded; b"" when absent."""
    return base64.b64decode((obj.get("data") or {}).get(key) or "")


def configmap_value(obj: dict[str, Any], key: str) -> bytes:
    """One data key of a ConfigMap; b"" when absent."""
    return str((obj.get("data") or {}).get(key) or "").encode()


class KubeClient:
    """One API server, as the current context of a kubeconfig (a dict, file names local)."""

    def __init__(self, doc: dict[str, Any], source: str, *, timeout: float = 30.0):
        # 0.25-0.4 s to import (median 0.33 s, `python -X importtime -c 'import
        # kubernetes.client'` here): only here and in the methods, never at module import.
        from kubernetes import client
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.kube_config import KubeConfigLoader

        self.source = source
        self.timeout = timeout
        self._fds: list[int] = []
        configuration = client.Configuration(host="")  # not http://localhost when none given
        # The in-memory files live as long as what names them (an ApiClient handed out too),
        # unless `close` ends them first.
        self._release = weakref.finalize(configuration, _close_all, self._fds)
        configuration.proxy = None     # not the environment's; a kubeconfig's proxy-url wins
        configuration.retries = False  # fail at once: every wait here retries with a timeout
        try:
            loader = KubeConfigLoader(config_dict=_in_memory(_no_plugins(doc, source),
                                                             self._fds, source))
            loader.load_and_set(configuration)
            self.cluster_name = str(loader.current_context["context"]["cluster"])
        except (ConfigException, KeyError, TypeError, ValueError) as exc:
            self._release()
            raise InvalidInput(f"kubeconfig {source}: {exc}") from exc
        self.server = str(configuration.host)
        if not self.server.startswith("https://"):
            self._release()
            raise InvalidInput(f"kubeconfig {source}: the server of its current context, "
                               f"{self.server or '(none)'}, is not an https:// URL")
        self.api: ApiClient = client.ApiClient(configuration)
        # Set once a server is found not to serve certificates.k8s.io/v1 (OpenShift 4.3).
        self._csr_v1beta1 = False

    @classmethod
    def from_file(cls, path: Path, resolve: Callable[[str], Path] = Path,
                  shown: str | None = None, *, timeout: float = 30.0) -> KubeClient:
        """The kubeconfig at local `path`; its file names are host paths given to `resolve`
        (identity: this machine's); `shown`: its host path."""
        return cls(kubeconfig.read(path, resolve, shown), shown or str(path), timeout=timeout)

    def close(self) -> None:
        self.api.close()
        self._release()

    # ---- objects ------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        return self._json("read", kind, name, namespace, missing_ok=True)

    def list(self, kind: str, namespace: str | None = None, *,
             limit: int | None = None) -> list[dict[str, Any]]:
        """The items (they carry no kind or apiVersion, as the API sends them)."""
        if kind == "CertificateSigningRequest" and not self._csr_v1beta1:
            answer = self._json("list", kind, limit=limit, missing_ok=True)
            if answer is not None:
                return list(answer.get("items") or [])
            self._csr_v1beta1 = True
            _log.info("kube.csr_v1beta1", server=self.server)
        answer = self._json("list", kind, None, namespace, limit=limit)
        return list(answer.get("items") or [])

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._json("create", obj["kind"], None, meta.get("namespace"), obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._json("replace", obj["kind"], meta["name"], meta.get("namespace"), obj)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or replace the one of that name (keeping its resourceVersion)."""
        meta = obj["metadata"]
        current = self.get(obj["kind"], meta["name"], meta.get("namespace"))
        if current is None:
            return self.create(obj)
        return self.replace({**obj, "metadata": {
            **meta, "resourceVersion": current["metadata"]["resourceVersion"]}})

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """Ask for the deletion (finalizers may keep the object a while); gone already: fine."""
        self._json("delete", kind, name, namespace, missing_ok=True)

    def merge_patch(self, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of an OpenShift resource (e.g. an operator's spec)."""
        return self._json("patch", kind, name, None, patch)

    def approve_csr(self, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """PUT the CSR's approval subresource; None when it changed since it was read (409)."""
        from kubernetes.client import CertificatesV1Api, V1CertificateSigningRequest

        def v1() -> Any:
            return CertificatesV1Api(self.api).replace_certificate_signing_request_approval(
                name, _model(V1CertificateSigningRequest, body),
                _request_timeout=self.timeout)

        resource = _label("CertificateSigningRequest", name, None,
                          _CSR_V1BETA1 if self._csr_v1beta1 else None)
        answer = self._guarded(f"PUT {resource}/approval", lambda: self._v1beta1_approval(
            name, body) if self._csr_v1beta1 else v1(), allowed=(409,))
        return None if answer is None else self.api.sanitize_for_serialization(answer)

    # ---- health ---------------------------------------------------------------------------
    def check_ready(self) -> None:
        """GET /readyz; ApiUnavailable unless the API server says it is ready."""
        response = self._guarded("GET /readyz", lambda: self._raw("GET", "/readyz"))
        if response.status != 200:
            raise ApiUnavailable(f"GET /readyz on {self.server} answered {response.status}: "
                                 f"{(response.data or b'').decode(errors='replace')[:200]}")

    def answers(self) -> bool:
        try:
            self.check_ready()
        except ApiUnavailable:
            return False
        return True

    def wait_ready(self, timeout: float, *, next_step: str) -> None:
        wait_until(self.answers, timeout=timeout,
                   what=f"the API server at {self.server} to answer /readyz",
                   next_step=next_step)

    # ---- inside ---------------------------------------------------------------------------
    def _json(self, verb: str, kind: str, name: str | None = None,
              namespace: str | None = None, body: dict[str, Any] | None = None, *,
              limit: int | None = None, missing_ok: bool = False) -> Any:
        """One call of the typed API for `kind` (CustomObjectsApi for OpenShift's kinds), its
        answer as the API's JSON; None for 404 when `missing_ok`. `verb`: read, list, create,
        replace, patch or delete, as the generated methods are named."""
        from kubernetes import client

        custom = _CUSTOM.get(kind)
        if kind == "CertificateSigningRequest" and self._csr_v1beta1:
            custom = _CSR_V1BETA1
        if custom is not None:
            # e.g. get_cluster_custom_object(group, version, plural, name)
            method = getattr(client.CustomObjectsApi(self.api),
                             f"{'get' if verb == 'read' else verb}_cluster_custom_object")
            args: list[Any] = [*custom, *([name] if name is not None else [])]
        else:
            # e.g. read_namespaced_secret(name, namespace), create_namespace(body)
            api_class, suffix, _, namespaced = _TYPED[kind]
            method = getattr(getattr(client, api_class)(self.api), f"{verb}_{suffix}")
            args = [name] if name is not None else []
            args += [namespace or "default"] if namespaced else []
        args += [body] if body is not None else []
        options: dict[str, Any] = {"_request_timeout": self.timeout}
        if limit is not None:
            options["limit"] = limit
        if verb == "patch":
            options["_content_type"] = "application/merge-patch+json"
        answer = self._guarded(f"{_VERBS[verb]} {_label(kind, name, namespace, custom)}",
                               lambda: method(*args, **options),
                               allowed=(404,) if missing_ok else ())
        return None if answer is None else self.api.sanitize_for_serialization(answer)

    def _v1beta1_approval(self, name: str, body: dict[str, Any]) -> Any:
        """The one request without a generated method: the v1beta1 approval subresource."""
        from kubernetes.client.exceptions import ApiException

        group, version, plural = _CSR_V1BETA1
        response = self._raw("PUT", f"/apis/{group}/{version}/{plural}/{quote(name)}/approval",
                             body)
        if not 200 <= response.status < 300:
            failure = ApiException(status=response.status, reason=response.reason)
            failure.body = response.data
            raise failure
        return json.loads(response.data)

    def _raw(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A request the generated API has no method for, on the client's own connection
        pool and credentials (the generated helpers for it differ between client versions:
        boto3 holds this one at 36). Answers any status; the urllib3 response."""
        headers = {"Accept": "application/json"}
        token = self.api.configuration.auth_settings().get("BearerToken", {}).get("value")
        if token:
            headers["Authorization"] = token
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        return self.api.rest_client.pool_manager.request(
            method, self.server.rstrip("/") + path, body=data, headers=headers,
            timeout=self.timeout, retries=False)

    def _guarded(self, what: str, call: Callable[[], Any], *,
                 allowed: tuple[int, ...] = ()) -> Any:
        """`call()`, its failures as ApiUnavailable; None for an HTTP status in `allowed`."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        where = f"{what} on {self.server}"
        try:
            return call()
        except ApiException as exc:
            if exc.status in allowed:
                return None
            if exc.status:
                raise self._refused(where, exc) from exc
            unreachable: Exception = exc  # status 0: the package's wrapping of a TLS error
        except (HTTPError, OSError) as exc:
            unreachable = exc
        raise ApiUnavailable(
            f"{where} failed: {_reason(unreachable)}",
            next_step=f"check that the API server at {self.server} runs and that the "
            f"kubeconfig {self.source} is the right one") from unreachable

    def _refused(self, where: str, exc: Any) -> ApiUnavailable:
        message = _message(exc.body) or ""
        what = f"{where} answered {exc.status} {exc.reason or ''}".rstrip()
        what += f": {message}" if message else ""
        if exc.status in (401, 403):
            return ApiUnavailable(what, next_step="use a kubeconfig with cluster-admin (the "
                                  "recovery one: `ocp-recovery recovery-apiserver create` "
                                  "prints it)")
        return ApiUnavailable(what)


def _label(kind: str, name: str | None = None, namespace: str | None = None,
           custom: tuple[str, str, str] | None = None) -> str:
    """kubectl's name for it: `secrets/x in namespace y`, `infrastructures.config.openshift.io/
    cluster`, `certificatesigningrequests.v1beta1.certificates.k8s.io`."""
    if custom is None and kind in _CUSTOM:
        custom = _CUSTOM[kind]
    if custom is None:
        resource = _TYPED[kind][2]
    else:
        group, version, plural = custom
        resource = f"{plural}.{version}.{group}" if custom == _CSR_V1BETA1 else \
            f"{plural}.{group}"
    resource += f"/{name}" if name else ""
    return resource + (f" in namespace {namespace}" if namespace else "")


def _message(body: Any) -> str | None:
    """The `message` of a Status body; a plain-text body (e.g. `404 page not found`) as is."""
    try:
        status = json.loads(body or "")
    except ValueError:
        return str(body).strip()[:200] or None
    if not isinstance(status, dict):
        return None
    return str(status.get("message") or "") or None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it wraps (urllib3 and `kubernetes` wrap the OS's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = next((a for a in current.args if isinstance(a, BaseException)), None)
        current = current.__cause__ or wrapped or current.__context__


def _reason(exc: BaseException) -> str:
    chain = list(_causes(exc))
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS: the server's certificate was refused ({cause.verify_message})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing listens there)"
        if isinstance(cause, socket.timeout | TimeoutError):
            return "timed out"
    innermost = chain[-1]
    return f"{type(innermost).__name__}: {innermost}"


def _no_plugins(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """Refuse credentials that run a program: every host command goes through the one
    executor, and a kubeconfig on a master has a certificate or a token."""
    for section, entry, _ in kubeconfig.entries(doc):
        for plugin in _PLUGINS if section == "users" else ():
            if entry.get(plugin):
                raise InvalidInput(
                    f"kubeconfig {source}: a user in it has an {plugin} plugin, which "
                    "ocp-recovery does not run",
                    next_step="use a kubeconfig with a client certificate or a token (the "
                    "recovery API server's: `ocp-recovery recovery-apiserver create`)")
    return doc


def _in_memory(doc: dict[str, Any], fds: list[int], source: str) -> dict[str, Any]:
    """A copy whose embedded certificates and key (`*-data`) are in-memory files: the package
    would write them to temporary files, which a killed run leaves on disk with a key in
    them. ssl reads a client pair only from a file name; /proc/self/fd/N of a memfd is one."""
    doc = copy.deepcopy(doc)
    for _, entry, file_keys in kubeconfig.entries(doc):
        for key in file_keys:
            data = entry.pop(f"{key}-data", None)
            if not data:
                continue
            try:
                content = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError, TypeError) as exc:
                raise InvalidInput(f"kubeconfig {source}: {key}-data is not base64") from exc
            fd = os.memfd_create(f"kubeconfig-{key}", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, content)
            entry[key] = f"/proc/self/fd/{fd}"
    return doc


def _close_all(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


def connect(ctx: Context) -> KubeClient:
    """The API the context's kubeconfig names; by default the recovery API server's. A
    given path is the host's; failing that, this machine's (a file mounted into the
    toolbox container, or the sandbox's admin kubeconfig)."""
    path = ctx.paths.recovery_kubeconfig
    timeout = ctx.timeouts.dial * 6
    if ctx.kubeconfig:
        path = ctx.paths.host(ctx.kubeconfig)
        local = Path(ctx.kubeconfig)
        if not path.exists() and local.is_absolute() and local.exists():
            return KubeClient.from_file(local, timeout=timeout)
    if not path.exists():
        raise PreconditionFailed(
            f"no kubeconfig: {ctx.paths.shown(path)} does not exist",
            next_step="ocp-recovery recovery-apiserver create (or pass --kubeconfig / set "
            "KUBECONFIG to a cluster-admin kubeconfig)")
    return KubeClient.from_file(path, ctx.paths.host, ctx.paths.shown(path), timeout=timeout)


def _model(model: Any, body: dict[str, Any]) -> Any:
    """A request body as the installed client takes it: a pydantic model from 37 on, a plain
    dict before (its serializer passes dicts through)."""
    validate = getattr(model, "model_validate", None)
    return validate(body) if validate is not None else body
