"""Text formats of etcd membership: `/run/etcd/environment` and INITIAL_CLUSTER."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from toolbox.errors import InvalidInput

# What the 4.3 setup-etcd-environment carries over when it rewrites the file.
CARRIED_OVER = ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE")


@dataclass
class EnvFile:
    """`/run/etcd/environment`: `export K=V` lines reach etcd, plain `K=V` lines are only
    read by the pod's shell (IP, DNS name)."""

    exported: dict[str, str] = field(default_factory=dict)
    plain: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.exported.get(key, self.plain.get(key))

    def merged(self) -> dict[str, str]:
        return {**self.plain, **self.exported}

    def render(self) -> str:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.exported.items()]
        lines += [f"{k}={shlex.quote(v)}" for k, v in self.plain.items()]
        return "\n".join(lines) + "\n"


def parse_env_file(text: str) -> EnvFile:
    """Shell-like `[export ]K=V` lines; comments and blank lines ignored; a later line wins,
    as when the shell sources the file (4.3's member add appended a `#[recover]` block)."""
    env = EnvFile()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exported = line.startswith("export ")
        if exported:
            line = line[len("export "):].strip()
        key, sep, value = line.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            continue
        words = shlex.split(value, comments=False) if value else [""]
        text_value = " ".join(words)
        env.exported.pop(key, None)
        env.plain.pop(key, None)
        (env.exported if exported else env.plain)[key] = text_value
    return env


def render_initial_cluster(members: list[tuple[str, str]]) -> str:
    return ",".join(f"{name}={url}" for name, url in members)


@dataclass(frozen=True)
class ClusterEntry:
    name: str
    peer_url: str

    @property
    def host(self) -> str:
        return urlsplit(self.peer_url).hostname or ""


def parse_initial_cluster(text: str) -> list[ClusterEntry]:
    """`name=https://host:2380[,…]`, split structurally (never by regex: the 4.3 greedy
    pattern matched two names when names contained DNS names, BZ 1826021)."""
    if not text or not text.strip():
        raise InvalidInput("INITIAL_CLUSTER is empty",
                           next_step="give NAME=https://HOST:2380[,NAME=https://HOST:2380…]")
    entries: list[ClusterEntry] = []
    for raw in text.split(","):
        item = raw.strip()
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise InvalidInput(f"INITIAL_CLUSTER entry {item!r} is not NAME=URL",
                               next_step="e.g. etcd-member-m0=https://etcd-0.example.com:2380")
        _check_peer_url(name, url)
        entries.append(ClusterEntry(name, url.rstrip("/")))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"INITIAL_CLUSTER names {', '.join(dup)} more than once")
    # One peer address, however spelt (name case, IPv6 zeros), is one member's.
    urls = [f"{_canonical(e.host)}:{urlsplit(e.peer_url).port}" for e in entries]
    if len(set(urls)) != len(urls):
        dup = sorted({e.peer_url for e, u in zip(entries, urls, strict=True)
                      if urls.count(u) > 1})
        raise InvalidInput(f"INITIAL_CLUSTER gives peer URL {', '.join(dup)} to two members "
                           "(one address, however it is spelt)")
    return entries


def _check_peer_url(name: str, url: str) -> None:
    parts = urlsplit("")
    try:
        parts = urlsplit(url)
        port, host = parts.port, parts.hostname
        if host and ":" in host:
            ipaddress.IPv6Address(host)  # a bracketed host must be an IPv6 address
    except ValueError:
        port = host = None
    if parts.scheme != "https" or not host or port is None or \
            parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidInput(
            f"INITIAL_CLUSTER URL of {name!r} is {url!r}; it must be https://HOST:PORT "
            "(OpenShift's etcd peers speak TLS only)",
            next_step=f"e.g. {name}=https://etcd-0.example.com:2380")


def find_local_entry(entries: list[ClusterEntry], addresses: set[str]) -> ClusterEntry:
    """The entry whose URL host is one of this host's IPs or DNS names (compared
    exactly, case-insensitively for names; IPv6 in any spelling)."""
    wanted = {_canonical(a) for a in addresses if a}
    matches = [e for e in entries if _canonical(e.host) in wanted]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(e.host for e in entries)
    if not matches:
        raise InvalidInput(
            f"this host ({', '.join(sorted(a for a in addresses if a))}) is not in "
            f"INITIAL_CLUSTER (hosts: {listed})",
            next_step="add this master's entry, with its etcd DNS name or IP as in "
            "/run/etcd/environment",
        )
    raise InvalidInput(f"this host matches several INITIAL_CLUSTER entries: "
                       f"{', '.join(e.name for e in matches)}")


def _canonical(host: str) -> str:
    text = host.strip("[]").lower().rstrip(".")
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text
