"""Guide 3.2 step 2: the etcd certificate signer, run on the surviving master.

`ocp-recovery signer serve` signs member certificates for the new masters it was told to
expect (their etcd DNS names), with the etcd and metric CAs, for whoever holds the one-time
token it prints; it stops once every expected member has its three certificates, or at its
deadline.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from toolbox import log
from toolbox.context import Context
from toolbox.errors import InvalidInput, PreconditionFailed, WaitTimedOut
from toolbox.etcd.cluster import parse_env_file
from toolbox.host.files import atomic_write, ensure_private_dir
from toolbox.pki.certs import Issued
from toolbox.pki.signer import Signer, make_server
from toolbox.procedures.member_recover import SIGNER_PORT
from toolbox.report import Report

_log = log.get(__name__)


@dataclass(frozen=True)
class SignerRequest:
    expect: list[str]             # etcd DNS names of the members to sign for
    ca: tuple[str, str]           # host paths: etcd CA cert and key (secret etcd-signer)
    metric_ca: tuple[str, str]    # secret etcd-metric-signer
    address: str | None = None    # default <this master's etcd IP>:9943
    token: str | None = None
    deadline: float = 3600.0


def new_token() -> str:
    return secrets.token_urlsafe(24)


def prepare(ctx: Context, request: SignerRequest) -> tuple[Signer, tuple[str, int], Path, Path]:
    if not request.expect:
        raise InvalidInput("tell the signer which members to expect",
                           next_step="--expect etcd-1.<cluster domain> (once per new master)")
    dns_name, ip = _this_member(ctx)
    if not dns_name or not ip:
        raise PreconditionFailed("this master's ETCD_DNS_NAME / ETCD_IPV4_ADDRESS are unknown "
                                 "(no /run/etcd/environment)",
                                 next_step="run the signer on the surviving master")
    member_dir = ctx.paths.etcd_member_resources
    serving = (member_dir / f"system:etcd-server:{dns_name}.crt",
               member_dir / f"system:etcd-server:{dns_name}.key")
    for path in serving:
        if not path.is_file():
            raise PreconditionFailed(f"{ctx.paths.shown(path)} is missing: the signer serves "
                                     "with this master's etcd server certificate")
    signer = Signer(_load_pair(ctx, request.ca, ("--ca-cert", "--ca-key")),
                    _load_pair(ctx, request.metric_ca, ("--metric-ca-cert", "--metric-ca-key")),
                    request.token or new_token(), set(request.expect),
                    dns_name.split(".", 1)[1])
    host, _, port = (request.address or f"{ip}:{SIGNER_PORT}").rpartition(":")
    return signer, (host, int(port)), serving[0], serving[1]


def _this_member(ctx: Context) -> tuple[str | None, str | None]:
    """This master's ETCD_DNS_NAME and ETCD_IPV4_ADDRESS, from /run/etcd/environment."""
    env = parse_env_file(ctx.paths.etcd_env_file.read_text()) \
        if ctx.paths.etcd_env_file.is_file() else None
    return (env.get("ETCD_DNS_NAME"), env.get("ETCD_IPV4_ADDRESS")) if env else (None, None)


def listening(ctx: Context, signer: Signer, address: tuple[str, int], *,
              token_shown: bool) -> Report:
    """What `signer serve` says once it listens: where, for whom, and the command each new
    master runs (`member recover` reaches the signer on this master's etcd IP, port 9943)."""
    _, ip = _this_member(ctx)
    url = f"https://{address[0]}:{address[1]}"
    warnings = [] if address[1] == SIGNER_PORT and address[0] in (ip, "0.0.0.0") else [
        f"`member recover` asks https://{ip}:{SIGNER_PORT} for certificates, not {url}"]
    fields: dict[str, object] = {"address": url, "expected": sorted(signer.expected)}
    if token_shown:  # else the operator chose it (OCP_RECOVERY_SIGNER_TOKEN) and has it
        fields["token"] = signer.token
    token = "<the token above>" if token_shown else "<the token exported here>"
    return Report(
        "signer.listening", f"signer on {url} for {', '.join(sorted(signer.expected))}",
        fields, details=[f"token: {signer.token}"] if token_shown else [], warnings=warnings,
        next=[f"on each new master, one at a time: export OCP_RECOVERY_SIGNER_TOKEN={token}; "
              f"ocp-recovery member recover {ip} etcd-member-<its node name>"])


CA_FILES_NEXT = ("write tls.crt and tls.key of the secrets etcd-signer and etcd-metric-signer "
                 "(namespace openshift-config) to files on this master and pass their host "
                 "paths with --ca-cert, --ca-key, --metric-ca-cert and --metric-ca-key")


def _load_pair(ctx: Context, pair: tuple[str, str], options: tuple[str, str]) -> Issued:
    cert_pem = _read_ca_file(ctx, options[0], pair[0])
    key_pem = _read_ca_file(ctx, options[1], pair[1])
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise InvalidInput(f"{options[0]} {pair[0]} is not a PEM certificate: {exc}",
                           next_step=CA_FILES_NEXT) from exc
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        raise InvalidInput(f"{options[1]} {pair[1]} is not an unencrypted PEM private key: "
                           f"{exc}", next_step=CA_FILES_NEXT) from exc
    return Issued(cert, key)  # type: ignore[arg-type]


def _read_ca_file(ctx: Context, option: str, path: str) -> bytes:
    """`path` is a host path: shown as given, and where it was looked for when the host's /
    is elsewhere (a sandbox master, /host in a container)."""
    local = ctx.paths.host(path)
    try:
        return local.read_bytes()
    except OSError as exc:
        looked = "" if str(local) == path else \
            f" (a host path: looked for {local}, under the host root {ctx.paths.root})"
        raise InvalidInput(f"cannot read {option} {path}{looked}: {exc.strerror}",
                           next_step=CA_FILES_NEXT) from exc


def serve(signer: Signer, address: tuple[str, int], cert: Path, key: Path,
          deadline: float, ready: threading.Event | None = None) -> Signer:
    server = make_server(signer, address, cert, key)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              daemon=True)
    thread.start()
    _log.info("signer.listening", address=f"{address[0]}:{address[1]}",
              expect=sorted(signer.expected))
    if ready is not None:
        ready.set()
    ends = time.monotonic() + deadline
    try:
        while not signer.spent:
            if time.monotonic() > ends:
                raise WaitTimedOut(
                    f"the signer served {deadline:.0f}s and "
                    f"{sorted(d for d in signer.expected if len(signer.issued.get(d, ())) < 3)}"
                    " did not get all their certificates",
                    state="signer stopped; certificates issued so far are valid",
                    next_step="start it again with a new token for the members left")
            time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
    _log.info("signer.done", members=sorted(signer.expected))
    return signer


TEMPLATE = Path(__file__).resolve().parents[1] / "manifests/signer/kube-etcd-cert-signer.yaml"
DEFAULT_MANIFEST = "./assets/manifests/kube-etcd-cert-signer.yaml"  # where 4.3 put it


@dataclass(frozen=True)
class RenderedSigner:
    manifest: str
    token: str
    expect: list[str]


def default_expectations(ctx: Context, members: int = 3) -> list[str]:
    """Without --expect: every etcd-<n>.<domain> of a 3-master cluster but this host's."""
    dns_name, _ = _this_member(ctx)
    if not dns_name or "." not in dns_name:
        raise PreconditionFailed("this master's ETCD_DNS_NAME is unknown, so the members to "
                                 "expect cannot be guessed", next_step="pass --expect "
                                 "etcd-<n>.<cluster domain> for each new master")
    domain = dns_name.split(".", 1)[1]
    return [f"etcd-{n}.{domain}" for n in range(members) if f"etcd-{n}.{domain}" != dns_name]


def render_manifest(hostname: str, image: str, expect: list[str],
                    token: str | None = None) -> RenderedSigner:
    """The signer Pod (and its token Secret) for `oc create -f`: the toolbox image serving,
    on the node whose kubernetes.io/hostname label is `hostname`."""
    if not hostname or any(c in hostname for c in ' "\n'):
        raise InvalidInput(f"master hostname {hostname!r} is not a node's hostname label",
                           next_step="give the short hostname, e.g. ip-10-0-143-125")
    if not expect:
        raise InvalidInput("no member to expect", next_step="--expect etcd-1.<domain> …")
    token = token or new_token()
    document = yaml.safe_load(TEMPLATE.read_text())
    secret, pod = document["items"]
    secret["stringData"]["token"] = token
    pod["spec"]["nodeSelector"]["kubernetes.io/hostname"] = hostname
    container = pod["spec"]["containers"][0]
    container["image"] = image
    for name in expect:
        container["command"] += ["--expect", name]
    header = "# Rendered by ocp-recovery signer manifest: apply with `oc create -f`.\n"
    return RenderedSigner(header + yaml.safe_dump(document, sort_keys=False), token, expect)


def write_manifest(rendered: RenderedSigner, output: Path) -> Path:
    """Where `oc create -f` will read it; 0600, since it holds the token."""
    ensure_private_dir(output.parent)
    atomic_write(output, rendered.manifest.encode(), mode=0o600)
    return output
