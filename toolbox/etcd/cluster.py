"""Text formats of etcd membership: `/run/etcd/environment` and INITIAL_CLUSTER."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from toolbox.errors import InvalidInput, PreconditionFailed
from toolbox.host import network

# What the 4.3 setup-etcd-environment carries over when it rewrites the file.
CARRIED_OVER = ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE")
PEER_PORT = 2380
CLIENT_PORT = 2379


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

    @property
    def port(self) -> int:
        return urlsplit(self.peer_url).port or PEER_PORT


def parse_initial_cluster(text: str) -> list[ClusterEntry]:
    """`name=https://host:2380[,…]`, split structurally (never by regex: the 4.3 greedy
    pattern matched two names when names contained DNS names, BZ 1826021)."""
    if not text or not text.strip():
        raise InvalidInput("INITIAL_CLUSTER is empty",
                           next_step="give NAME=https://HOST:2380[,NAME=https://HOST:2380…]")
    entries: list[ClusterEntry] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise InvalidInput(
                f"INITIAL_CLUSTER {text.strip()!r} has an empty entry (a comma at the start "
                "or end, or two commas together)",
                next_step="remove the extra comma: NAME=https://HOST:2380,NAME=https://…")
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise InvalidInput(f"INITIAL_CLUSTER entry {item!r} is not NAME=URL",
                               next_step="e.g. etcd-member-m0=https://etcd-0.example.com:2380")
        _check_separators(item, url)
        check_peer_url(f"INITIAL_CLUSTER URL of {name!r}", url,
                       example=f"{name}=https://etcd-0.example.com:{PEER_PORT}")
        entries.append(ClusterEntry(name, url.rstrip("/")))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"INITIAL_CLUSTER names {', '.join(dup)} more than once")
    # One peer address, however spelt (name case, IPv6 zeros), is one member's.
    urls = [f"{_canonical(e.host)}:{e.port}" for e in entries]
    if len(set(urls)) != len(urls):
        dup = sorted({e.peer_url for e, u in zip(entries, urls, strict=True)
                      if urls.count(u) > 1})
        raise InvalidInput(f"INITIAL_CLUSTER gives peer URL {', '.join(dup)} to two members "
                           "(one address, however it is spelt)")
    return entries


def _check_separators(item: str, url: str) -> None:
    """A name may hold any text; a URL holds no blank and no ';': there, one is a separator
    between entries that should have been a comma."""
    found = next((c for c in url if c.isspace() or c == ";"), None)
    if found is not None:
        shown = "';'" if found == ";" else "a space" if found == " " else repr(found)
        raise InvalidInput(
            f"INITIAL_CLUSTER entry {item!r} contains {shown}: entries are separated by "
            "commas only", next_step="e.g. a=https://etcd-0.example.com:2380,"
            "b=https://etcd-1.example.com:2380")


def check_peer_url(label: str, url: str, *, example: str) -> None:
    """An etcd peer URL as OpenShift's are: https://HOST:PORT, and not the client port."""
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
            f"{label} is {url!r}; it must be https://HOST:PORT "
            "(OpenShift's etcd peers speak TLS only)", next_step=f"e.g. {example}")
    if port == CLIENT_PORT:
        raise InvalidInput(
            f"{label} is {url!r}: {CLIENT_PORT} is etcd's client port; peers use "
            f"{PEER_PORT}", next_step=f"e.g. {example}")


# An INITIAL_CLUSTER entry -> the addresses its host resolves to (canonical text).
Resolved = Mapping[ClusterEntry, frozenset[str]]


def resolve_entries(entries: list[ClusterEntry], timeout: float) -> dict[ClusterEntry,
                                                                         frozenset[str]]:
    """Every entry's host resolved now, as etcd and its restore tool will resolve them:
    refuses a host that does not resolve (etcd would fail or wait on it) and two entries
    that reach one address and port (two members, one etcd)."""
    resolved = {entry: resolve_host(
        f"the host {entry.host} of INITIAL_CLUSTER entry {entry.name}={entry.peer_url}",
        entry.host, timeout, next_step="fix its DNS record (or /etc/hosts), or give the "
        f"member's IP: {entry.name}=https://<IP>:{entry.port}") for entry in entries}
    owner: dict[tuple[str, int], ClusterEntry] = {}
    for entry, found in resolved.items():
        for address in sorted(found):
            other = owner.setdefault((address, entry.port), entry)
            if other != entry:
                raise InvalidInput(
                    f"INITIAL_CLUSTER entries {other.name}={other.peer_url} and "
                    f"{entry.name}={entry.peer_url} both reach {_host_port(address, entry.port)}"
                    ": two members cannot share one etcd",
                    next_step="give each member its own host")
    return resolved


def resolve_host(what: str, host: str, timeout: float, *, next_step: str) -> frozenset[str]:
    """`host`'s addresses; InvalidInput saying `what` did not resolve, and why."""
    try:
        return network.resolve(host, timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, TimeoutError):
            reason = f"{exc} (a slow DNS server: raise --dial-timeout)"
        raise InvalidInput(f"{what} does not resolve: {reason}",
                           next_step=next_step) from exc


def find_local_entry(entries: list[ClusterEntry], addresses: set[str],
                     resolved: Resolved | None = None) -> ClusterEntry:
    """The entry whose URL host is one of this host's IPs or DNS names (compared
    exactly, case-insensitively for names; IPv6 in any spelling), or, given `resolved`,
    whose host resolves to one of this host's IPs."""
    wanted = {_canonical(a) for a in addresses if a}
    matches = [e for e in entries if _canonical(e.host) in wanted
               or wanted & (resolved or {}).get(e, frozenset())]
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
                       f"{', '.join(e.name for e in matches)} "
                       f"({', '.join(f'{e.name}={e.peer_url}' for e in matches)})",
                       next_step="keep one entry for this master")


def check_reaches_here(what: str, host: str, found: frozenset[str], ip: str) -> None:
    """`host`, which names this master, must resolve to its etcd IP: a stale DNS record
    would send the peers to another machine."""
    if _canonical(ip) in found:
        return
    if network.ip_literal(host) is not None:  # no DNS involved: the argument itself is wrong
        raise InvalidInput(f"{what} is not this master: {host} is not its ETCD_IPV4_ADDRESS "
                           f"{ip}", next_step=f"advertise this master's own address, "
                           f"https://{ip}:{PEER_PORT}")
    raise PreconditionFailed(
        f"{what} names this host, but {host} resolves to {', '.join(sorted(found))}, "
        f"not to this host's ETCD_IPV4_ADDRESS {ip}: peers would dial another machine",
        next_step=f"correct the DNS record of {host} to {ip} (or use https://{ip}:"
        f"{PEER_PORT})")


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _canonical(host: str) -> str:
    text = host.strip("[]").lower().rstrip(".")
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text
