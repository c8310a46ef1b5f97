"""Name resolution, as the peers and etcd's tools will do it: through the system resolver
(nsswitch: /etc/hosts, then DNS), within a bounded time."""

from __future__ import annotations

import ipaddress
import socket
import threading


def resolve(host: str, timeout: float) -> frozenset[str]:
    """The addresses `host` resolves to, in canonical text ("fd00::1", no zone). An IP
    literal (bracketed or not) is returned as it is, with no lookup. Raises OSError: the
    resolver's own (socket.gaierror) or TimeoutError after `timeout` seconds (getaddrinfo
    has no timeout of its own; glibc waits 5 s per DNS server and attempt)."""
    literal = ip_literal(host)
    if literal is not None:
        return frozenset({literal})
    outcome: list[frozenset[str] | OSError] = []

    def lookup() -> None:
        try:
            found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            outcome.append(frozenset(_canonical_ip(str(info[4][0])) for info in found))
        except OSError as exc:
            outcome.append(exc)
        except ValueError as exc:  # a label IDNA refuses (empty, too long), a NUL
            outcome.append(socket.gaierror(socket.EAI_NONAME, f"not a host name ({exc})"))

    # A daemon thread: a lookup that never returns must not keep the process from exiting.
    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise TimeoutError(f"no answer from the resolver within {timeout:g}s")
    result = outcome[0]
    if isinstance(result, OSError):
        raise result
    return result


def ip_literal(host: str) -> str | None:
    """`host` as a canonical IP address, or None when it is a name."""
    try:
        return _canonical_ip(host.strip("[]"))
    except ValueError:
        return None


def _canonical_ip(text: str) -> str:
    """Raises ValueError when `text` is not an IP address."""
    return ipaddress.ip_address(text.partition("%")[0]).compressed
