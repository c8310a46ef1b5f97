"""Kubeconfig files: read the current context's server and credentials, write new ones.

Paths inside a kubeconfig are the host's paths; the caller passes `resolve` so a toolbox
running in a container with the host at /host finds the same files.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from toolbox.errors import InvalidInput


@dataclass(frozen=True)
class KubeConfig:
    """What one context of a kubeconfig says: where the API is and who we are."""

    server: str
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    insecure: bool = False
    source: str = "(built)"
    cluster_name: str = "cluster"

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.server)
        if parts.scheme != "https" or not parts.hostname:
            raise InvalidInput(f"kubeconfig {self.source}: server {self.server!r} is not an "
                               "https:// URL")
        return parts.hostname, parts.port or 443


def load(path: Path, resolve: Callable[[str], Path] | None = None) -> KubeConfig:
    """The current context of the kubeconfig at `path` (a local path)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidInput(f"kubeconfig {path} does not exist",
                           next_step="pass --kubeconfig PATH or set KUBECONFIG") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"kubeconfig {path} is not YAML: {exc}") from exc
    return parse(doc, str(path), resolve or (lambda p: (path.parent / p)))


def parse(doc: Any, source: str, resolve: Callable[[str], Path]) -> KubeConfig:
    if not isinstance(doc, dict):
        raise InvalidInput(f"kubeconfig {source} is not a mapping")

    def named(section: str, name: str) -> dict[str, Any]:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                return dict(item.get(section[:-1]) or {})
        raise InvalidInput(f"kubeconfig {source}: no {section[:-1]} named {name!r}")

    context = named("contexts", str(doc.get("current-context") or ""))
    cluster = named("clusters", str(context.get("cluster")))
    user = named("users", str(context.get("user"))) if context.get("user") else {}

    def material(section: dict[str, Any], key: str) -> bytes | None:
        if section.get(f"{key}-data"):
            return base64.b64decode(section[f"{key}-data"])
        if section.get(key):
            try:
                return resolve(str(section[key])).read_bytes()
            except OSError as exc:
                raise InvalidInput(f"kubeconfig {source}: {key} {section[key]} cannot be "
                                   f"read: {exc}") from exc
        return None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = resolve(str(user["tokenFile"])).read_text().strip()
    if "server" not in cluster:
        raise InvalidInput(f"kubeconfig {source}: the cluster has no server")
    return KubeConfig(
        server=str(cluster["server"]),
        ca_pem=material(cluster, "certificate-authority"),
        client_cert_pem=material(user, "client-certificate"),
        client_key_pem=material(user, "client-key"),
        token=token,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        source=source,
        cluster_name=str(context.get("cluster")),
    )


def render(*, cluster: str, server: str, user: str, context: str,
           ca_pem: bytes | None = None, ca_path: str | None = None,
           client_cert_pem: bytes | None = None, client_key_pem: bytes | None = None,
           token: str | None = None) -> bytes:
    """A one-context kubeconfig; the CA embedded or (as 4.3's recovery one) by path."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    cluster_entry: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster_entry["certificate-authority-data"] = b64(ca_pem)
    elif ca_path is not None:
        cluster_entry["certificate-authority"] = ca_path
    user_entry: dict[str, Any] = {}
    if client_cert_pem is not None and client_key_pem is not None:
        user_entry["client-certificate-data"] = b64(client_cert_pem)
        user_entry["client-key-data"] = b64(client_key_pem)
    if token is not None:
        user_entry["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": cluster_entry}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [{"name": user, "user": user_entry}],
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()
