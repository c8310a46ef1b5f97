"""Settings resolved once from flags and the environment, then passed down.

Nothing below the cli reads `os.environ`: the Context carries what was found, including the
environment children get (proxy variables removed, so a cluster-wide proxy exported for the
guide never captures etcd traffic).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from toolbox import log
from toolbox.errors import InvalidInput
from toolbox.host.exec import HOST_EXEC_MODES, Executor, default_mode
from toolbox.host.paths import HostPaths

DEFAULT_ENDPOINT = "https://127.0.0.1:2379"
DEFAULT_STATE_DIR = "/var/lib/ocp-recovery"
CONTAINER_HOST_ROOT = Path("/host")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")
LOG_FORMATS = ("console", "json")


@dataclass(frozen=True)
class EtcdTarget:
    """Where etcd is and how to authenticate. None for a TLS file means: take it from the
    newest kube-apiserver-pod-N on the host, as the 4.3 scripts did."""

    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Timeouts:
    dial: float = 5.0            # connecting to one etcd endpoint
    stream_idle: float = 30.0    # longest silence tolerated inside a snapshot stream
    command: float = 300.0       # one host or tool command
    pod_stop: float = 300.0      # static pods and containers to stop
    health: float = 300.0        # etcd to become healthy after a change

    def scaled(self, base: float, db_bytes: int) -> float:
        """`base` plus what a db of this size adds: a read and a write of it on a slow
        master disk (40 MiB/s each way, so 51 s per GiB; 7 minutes more at 8 GiB)."""
        return base + db_bytes / SLOW_DISK_RATE


SLOW_DISK_RATE = 20 << 20  # bytes/s: the db read and written once at 40 MiB/s
SCALED_SECONDS_PER_GIB = (1 << 30) / SLOW_DISK_RATE  # what Timeouts.scaled adds, for messages


def longer_health_wait(command: str) -> str:
    """The advice for a wait on etcd that ran out: `command` again with a longer wait."""
    return (f"if etcd is still loading a large db (its log says so), give the wait longer "
            f"with `--health-timeout 1800` on the `{command}`")


@dataclass(frozen=True)
class Context:
    host_root: Path
    host_exec: str
    state_dir: str
    etcd: EtcdTarget
    timeouts: Timeouts
    log_format: str
    interactive: bool                # stdout is a terminal: progress bars
    stdin_is_terminal: bool = False  # a confirmation can be asked (stdout may be a pipe)
    child_env: Mapping[str, str] = field(default_factory=dict)
    # The one-time token `signer serve` printed; never logged, never journaled.
    signer_token: str | None = None
    # Extra peer-certificate IPs for new members (the sandbox sets 127.0.0.1).
    extra_peer_ips: tuple[str, ...] = ()
    # The Kubernetes API's kubeconfig, a host path; None: the recovery API server's.
    kubeconfig: str | None = None
    # INITIAL_CLUSTER as the guide exports it, for `restore` without --initial-cluster.
    initial_cluster: str | None = None
    # The ocp-recovery image the signer pod runs (OCP_RECOVERY_IMAGE, or
    # KUBE_ETCD_SIGNER_SERVER as the guide exports it).
    image: str | None = None
    # AWS_REGION as other AWS SDKs read it: boto3 itself reads only AWS_DEFAULT_REGION.
    aws_region: str | None = None

    @cached_property
    def paths(self) -> HostPaths:
        return HostPaths(self.host_root, self.state_dir)

    @cached_property
    def executor(self) -> Executor:
        return Executor(self.host_exec, self.host_root, self.child_env, self.timeouts.command)


def default_host_root(environ: Mapping[str, str]) -> Path:
    given = environ.get("OCP_RECOVERY_HOST_ROOT")
    if given:
        return Path(given)
    if (CONTAINER_HOST_ROOT / "etc" / "kubernetes").is_dir():
        return CONTAINER_HOST_ROOT
    return Path("/")


def initial_cluster_of(environ: Mapping[str, str]) -> str | None:
    """INITIAL_CLUSTER, as the guide exports it for the restore."""
    return environ.get("INITIAL_CLUSTER") or None


def termination_log_of(environ: Mapping[str, str]) -> Path | None:
    """OCP_RECOVERY_TERMINATION_LOG: the file that gets the run's JSON summary at exit (the
    CronJob names the pod's /dev/termination-log, which `oc get pod -o yaml` shows)."""
    given = environ.get("OCP_RECOVERY_TERMINATION_LOG")
    return Path(given) if given else None


def json_result_asked(log_format: str | None, environ: Mapping[str, str]) -> bool:
    """JSON lines asked for by name (--log-format json, or OCP_RECOVERY_LOG_FORMAT=json as
    the CronJob sets), not merely a pipe: the result is then JSON too."""
    return (log_format or environ.get("OCP_RECOVERY_LOG_FORMAT")) == "json"


def log_format_of(flag: str | None, environ: Mapping[str, str]) -> str:
    """--log-format, else OCP_RECOVERY_LOG_FORMAT, else console for a person at a terminal
    and JSON lines for everything else (a CronJob, a pipe)."""
    chosen = flag or environ.get("OCP_RECOVERY_LOG_FORMAT") or (
        "console" if sys.stderr.isatty() else "json")
    if chosen not in LOG_FORMATS:
        raise InvalidInput(f"OCP_RECOVERY_LOG_FORMAT is {chosen!r}, not one of "
                           f"{', '.join(LOG_FORMATS)}", next_step="unset it, or set it to "
                           "console or json")
    return chosen


def build_context(
    environ: Mapping[str, str],
    *,
    host_root: str | None = None,
    host_exec: str | None = None,
    state_dir: str | None = None,
    endpoints: str | None = None,
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    log_format: str | None = None,
    dial_timeout: float | None = None,
    health_timeout: float | None = None,
    kubeconfig: str | None = None,
) -> Context:
    root = Path(host_root) if host_root else default_host_root(environ)
    if not root.is_dir():
        raise InvalidInput(
            f"host root {root} is not a directory",
            next_step="pass --host-root (or OCP_RECOVERY_HOST_ROOT) pointing at the host's / "
            "(in a container: -v /:/host)",
        )
    mode = host_exec or environ.get("OCP_RECOVERY_HOST_EXEC")
    if not mode:
        mode, fallback = default_mode(root)
        if fallback:
            log.get(__name__).warning("host_exec.fallback", why=fallback)
    if mode not in HOST_EXEC_MODES:
        raise InvalidInput(f"host exec mode {mode!r} is not one of {', '.join(HOST_EXEC_MODES)}")
    endpoint_text = endpoints or environ.get("ETCDCTL_ENDPOINTS") or DEFAULT_ENDPOINT
    etcd = EtcdTarget(
        endpoints=parse_endpoints(endpoint_text),
        cacert=cacert or environ.get("ETCDCTL_CACERT") or None,
        cert=cert or environ.get("ETCDCTL_CERT") or None,
        key=key or environ.get("ETCDCTL_KEY") or None,
    )
    defaults = Timeouts()
    timeouts = Timeouts(
        dial=_seconds("--dial-timeout", dial_timeout, defaults.dial),
        health=_seconds("--health-timeout", health_timeout, defaults.health),
    )
    # Children get no proxy and no ETCDCTL_* (our flags say where etcd is; etcdctl 3.5
    # refuses a flag that is also set in its environment); etcdctl 3.3 needs API 3.
    child_env = {k: v for k, v in environ.items()
                 if k.lower() not in PROXY_VARIABLES and not k.startswith("ETCDCTL_")}
    child_env["ETCDCTL_API"] = "3"
    return Context(
        host_root=root,
        host_exec=mode,
        state_dir=state_dir or environ.get("OCP_RECOVERY_STATE_DIR") or DEFAULT_STATE_DIR,
        etcd=etcd,
        timeouts=timeouts,
        log_format=log_format_of(log_format, environ),
        interactive=sys.stdout.isatty(),
        stdin_is_terminal=sys.stdin.isatty(),
        child_env=child_env,
        signer_token=environ.get("OCP_RECOVERY_SIGNER_TOKEN") or None,
        extra_peer_ips=tuple(i for i in environ.get("OCP_RECOVERY_SANDBOX_PEER_IPS", "")
                             .split(",") if i),
        kubeconfig=kubeconfig or environ.get("KUBECONFIG") or None,
        initial_cluster=initial_cluster_of(environ),
        image=environ.get("OCP_RECOVERY_IMAGE") or environ.get("KUBE_ETCD_SIGNER_SERVER")
        or None,
        aws_region=environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION") or None,
    )


def _seconds(flag: str, given: float | None, default: float) -> float:
    if given is None:
        return default
    if not 0 < given < math.inf:  # also NaN
        raise InvalidInput(f"{flag} is {given:g}: a wait needs a number of seconds above 0 "
                           "(and an end)",
                           next_step=f"pass {flag} SECONDS, or leave it out for {default:.0f}")
    return given


def parse_endpoints(text: str) -> tuple[str, ...]:
    """`https://a:2379,b:2379` -> full URLs; a bare host:port gets https:// (etcd is TLS-only
    on OpenShift masters)."""
    result = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if "://" not in item:
            item = "https://" + item
        scheme, _, rest = item.partition("://")
        if scheme not in ("https", "http") or not rest or "/" in rest.rstrip("/"):
            raise InvalidInput(
                f"etcd endpoint {raw.strip()!r} is not of the form https://HOST:PORT",
                next_step="fix --endpoints / ETCDCTL_ENDPOINTS, e.g. https://10.0.0.5:2379",
            )
        result.append(f"{scheme}://{rest.rstrip('/')}")
    if not result:
        raise InvalidInput("no etcd endpoint given", next_step="pass --endpoints https://IP:2379")
    return tuple(result)


def sandbox_dir(environ: Mapping[str, str], given: Path | None) -> Path:
    """The sandbox's directory: --dir, else OCP_RECOVERY_SANDBOX, else the default."""
    from toolbox.sandbox.cluster import DEFAULT_DIR

    return given or Path(environ.get("OCP_RECOVERY_SANDBOX") or DEFAULT_DIR)
