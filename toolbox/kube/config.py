"""Kubeconfig files: read one with its file names resolved on the host, and write new ones.

The `kubernetes` package does the loading (contexts, users, credentials: toolbox.kube.client);
what it cannot know is that a kubeconfig's file names are the host's, so a toolbox running in
a container with the host at /host must find them under it. `read` does only that.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from toolbox.errors import InvalidInput

# The file names a kubeconfig may hold, by section: (the entry's key, its file keys).
FILE_KEYS = {"clusters": ("cluster", ("certificate-authority",)),
             "users": ("user", ("client-certificate", "client-key", "tokenFile"))}


def entries(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], tuple[str, ...]]]:
    """(section, entry, its file keys) of every cluster and user entry in `doc`."""
    for section, (entry_key, file_keys) in FILE_KEYS.items():
        items = doc.get(section)
        for item in items if isinstance(items, list) else []:
            entry = item.get(entry_key) if isinstance(item, dict) else None
            if isinstance(entry, dict):
                yield section, entry, file_keys


def read(path: Path, resolve: Callable[[str], Path] = Path, shown: str | None = None
         ) -> dict[str, Any]:
    """The kubeconfig at `path` (a local path) with each file name in it made local by
    `resolve` (a host path -> this machine's); a relative one is taken from the kubeconfig's
    own directory, as kubectl does. `shown` is its host path (messages, that directory)."""
    name = shown or str(path)
    try:
        doc = yaml.safe_load(path.read_bytes())
    except FileNotFoundError as exc:
        raise InvalidInput(f"kubeconfig {name} does not exist",
                           next_step="pass --kubeconfig PATH or set KUBECONFIG") from exc
    except OSError as exc:
        raise InvalidInput(f"kubeconfig {name} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"kubeconfig {name} is not YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInput(f"kubeconfig {name} is not a mapping")
    directory = posixpath.dirname(name)
    for _, entry, file_keys in entries(doc):
        for key in file_keys:
            if entry.get(key):
                entry[key] = str(resolve(posixpath.join(directory, str(entry[key]))))
    return doc


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
