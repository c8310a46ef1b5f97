"""Static pod manifests as the control-plane procedures read them: which host directory a
volume is, which image a container runs, and the annotation that makes kubelet restart it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from toolbox.errors import PreconditionFailed


def load_pod(path: Path, shown: str | None = None) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise PreconditionFailed(f"{shown or path} does not exist",
                                 next_step="check that this is a master with the control-plane "
                                 "static pods in /etc/kubernetes/manifests") from exc
    except yaml.YAMLError as exc:
        raise PreconditionFailed(f"{shown or path} is not a readable pod manifest: {exc}"
                                 ) from exc
    if not isinstance(doc, dict) or doc.get("kind") != "Pod":
        raise PreconditionFailed(f"{shown or path} is not a Pod manifest")
    return doc


def host_path_of(pod: dict[str, Any], volume: str, shown: str) -> str:
    """The hostPath of a named volume (e.g. resource-dir -> /etc/kubernetes/…-pod-10)."""
    for item in pod.get("spec", {}).get("volumes") or []:
        if item.get("name") == volume and item.get("hostPath", {}).get("path"):
            return str(item["hostPath"]["path"])
    raise PreconditionFailed(f"{shown} has no hostPath volume named {volume!r}")


def annotated(pod: dict[str, Any], key: str, value: str) -> bytes:
    """The manifest with one annotation set: a change kubelet answers by restarting it."""
    meta = pod.setdefault("metadata", {})
    meta.setdefault("annotations", {})[key] = value
    return yaml.safe_dump(pod, sort_keys=False).encode()
