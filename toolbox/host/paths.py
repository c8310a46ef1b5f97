"""Every host path the procedures use, resolved under the host root.

On RHCOS `/home` is a symlink to `var/home`; in a container the host is mounted at `/host`,
so symlinks on the host are followed as the host would follow them (an absolute target is
taken from the host root, never from the container's own `/`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from toolbox.errors import InvalidInput
from toolbox.host import files

_REVISION_DIR = re.compile(r"\Akube-apiserver-pod-([1-9][0-9]*|0)\Z", re.ASCII)
_MAX_SYMLINKS = 40


def resolve_under(root: Path, host_path: str | PurePosixPath) -> Path:
    """Map an absolute host path to a local path under `root`, following symlinks inside it."""
    text = str(host_path)
    if not text.startswith("/"):
        raise InvalidInput(
            f"{text!r} is not an absolute path; host paths start with / "
            "(e.g. /home/core/backup)",
            next_step="give the full host path",
        )
    parts = [p for p in PurePosixPath(text).parts[1:] if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise InvalidInput(f"too many symlinks resolving {text} under {root}")
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                resolved = []
                parts = list(target.parts[1:]) + parts
            else:
                parts = list(target.parts) + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def revision_number(directory: Path) -> int | None:
    match = _REVISION_DIR.match(directory.name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class HostPaths:
    root: Path
    state_dir_on_host: str = "/var/lib/ocp-recovery"

    def host(self, host_path: str | PurePosixPath) -> Path:
        return resolve_under(self.root, host_path)

    def shown(self, local: Path) -> str:
        """The host's own name for a local path, for messages the operator acts on."""
        try:
            return str(PurePosixPath("/", *local.relative_to(self.root).parts))
        except ValueError:
            return str(local)

    def require_free_space(self, directory: Path, needed: int, what: str) -> None:
        """files.require_free_space, naming `directory` by its host path (not /host/…)."""
        files.require_free_space(directory, needed, what, self.shown(directory))

    @property
    def kubernetes(self) -> Path:
        return self.host("/etc/kubernetes")

    @property
    def manifests(self) -> Path:
        return self.host("/etc/kubernetes/manifests")

    @property
    def etcd_manifest(self) -> Path:
        return self.manifests / "etcd-member.yaml"

    @property
    def static_pod_resources(self) -> Path:
        return self.host("/etc/kubernetes/static-pod-resources")

    @property
    def etcd_member_resources(self) -> Path:
        return self.static_pod_resources / "etcd-member"

    @property
    def etcd_data_dir(self) -> Path:
        return self.host("/var/lib/etcd")

    @property
    def etcd_env_file(self) -> Path:
        return self.host("/run/etcd/environment")

    @property
    def etcd_conf(self) -> Path:
        return self.host("/etc/etcd/etcd.conf")

    @property
    def state_dir(self) -> Path:
        return self.host(self.state_dir_on_host)

    @property
    def kubelet_dir(self) -> Path:
        return self.host("/var/lib/kubelet")

    @property
    def bootstrap_kubeconfig(self) -> Path:
        """The kubeconfig kubelet bootstraps with (and the etcd certs init container uses)."""
        return self.host("/etc/kubernetes/kubeconfig")

    @property
    def recovery_apiserver_dir(self) -> Path:
        return self.static_pod_resources / "recovery-kube-apiserver-pod"

    @property
    def recovery_apiserver_manifest(self) -> Path:
        return self.manifests / "recovery-kube-apiserver-pod.yaml"

    @property
    def recovery_kubeconfig(self) -> Path:
        return self.recovery_apiserver_dir / "admin.kubeconfig"

    @property
    def browse_dir(self) -> Path:
        """`snapshot browse`: its certificates, config, and the scratch etcd's data dir."""
        return self.static_pod_resources / "ocp-recovery-browse-pod"

    @property
    def browse_manifest(self) -> Path:
        return self.manifests / "ocp-recovery-browse-pod.yaml"

    def kube_apiserver_revisions(self) -> list[Path]:
        """`kube-apiserver-pod-N` directories, lowest N first (the 4.3 scripts' `ls -v`)."""
        if not self.static_pod_resources.is_dir():
            return []
        found = [
            d for d in self.static_pod_resources.iterdir()
            if d.is_dir() and not d.is_symlink() and revision_number(d) is not None
        ]
        return sorted(found, key=lambda d: revision_number(d) or 0)


def host_path_argument(path: str, host_root: Path) -> str:
    """Paths on the command line are host paths. A relative one (the 4.3 docs used
    `./assets/backup`) is taken from the working directory when that is on the host: we run
    on the host itself, or the working directory is under the host root (`cd
    /host/home/core` in a container). `/host/home/core/backup` in a container whose host
    root is /host is taken as the host's `/home/core/backup`."""
    root = str(host_root).rstrip("/")
    if not path.startswith("/") and path:
        given, path = path, os.path.abspath(path)
        if root and not path.startswith(root + "/"):
            raise InvalidInput(
                f"{given!r} is relative, and the working directory is not on the host "
                f"(the host's / is {host_root})",
                next_step="give the absolute host path, e.g. /home/core/backup")
    if root and path.startswith(root + "/"):
        return path[len(root):]
    return path
