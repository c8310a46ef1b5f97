"""Guide 3.4, expired control-plane certificates: the recovery API server, the
certificates, the operators, the kubelet's kubeconfig and the kubelet; `certs report`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from toolbox import log
from toolbox.commands.common import DRY_RUN, YES, GlobalOptions, command, emit, run_journaled
from toolbox.errors import RecoveryError
from toolbox.report import Report

commands = typer.Typer()
recovery_apiserver = typer.Typer(help="A recovery kube-apiserver on 127.0.0.1:7443 "
                                 "(guide 3.4).", no_args_is_help=True)
control_plane = typer.Typer(help="Control-plane operators (guide 3.4).", no_args_is_help=True)
kubeconfig = typer.Typer(help="The kubelet's kubeconfig (guide 3.4).", no_args_is_help=True)
kubelet = typer.Typer(help="This master's kubelet (guide 3.4).", no_args_is_help=True)
certs = typer.Typer(help="Certificates on this host and in the API.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(recovery_apiserver, name="recovery-apiserver")
    app.registered_commands += commands.registered_commands
    app.add_typer(control_plane, name="control-plane")
    app.add_typer(kubeconfig, name="kubeconfig")
    app.add_typer(kubelet, name="kubelet")
    app.add_typer(certs, name="certs")


@command(recovery_apiserver, "create")
def recovery_apiserver_create(options: GlobalOptions, dry_run: DRY_RUN = False,
                              yes: YES = False) -> None:
    """Guide 3.4 steps 1-3: start a recovery kube-apiserver on 127.0.0.1:7443 and wait
    until it answers."""
    from toolbox.procedures import recovery_apiserver as procedure

    run_journaled(options, options.context(), procedure.PROCEDURE, None, dry_run=dry_run,
                  yes=yes)


@command(recovery_apiserver, "destroy")
def recovery_apiserver_destroy(options: GlobalOptions) -> None:
    """Guide 3.4 last step: stop the recovery kube-apiserver, remove what create made."""
    from toolbox.procedures import recovery_apiserver as procedure

    left = procedure.destroy(options.context())
    emit(options, Report("recovery_apiserver.destroyed", "the recovery kube-apiserver is gone",
                         {"kept": left},
                         details=[f"kept (not made by create): {', '.join(left)}"] if left
                         else []))


@command(commands, "regenerate-certificates")
def regenerate_certificates(options: GlobalOptions, dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what is due and every host change; change nothing.")] = False,
        yes: YES = False) -> None:
    """Guide 3.4 step 4: regenerate the control-plane certificates through the recovery
    API, write them for the three control-plane pods, and restart those pods."""
    from toolbox.procedures import regenerate_certs as procedure

    run_journaled(options, options.context(), procedure.PROCEDURE, None, dry_run=dry_run,
                  yes=yes)


@command(control_plane, "force-redeploy")
def force_redeploy(options: GlobalOptions, reason: Annotated[str | None, typer.Option(
        help="forceRedeploymentReason (default recovery-<UTC time>).")] = None) -> None:
    """Guide 3.4 step 5: make the operators roll out kube-apiserver, kube-controller-manager
    and kube-scheduler."""
    from toolbox.kube.client import connect
    from toolbox.procedures import force_redeploy as procedure

    used = procedure.run(connect(options.context()), reason)
    emit(options, Report("control_plane.force_redeploy",
                         f"forceRedeploymentReason={used} set on kubeapiserver, "
                         "kubecontrollermanager and kubescheduler 'cluster'", {"reason": used},
                         next=["ocp-recovery kubeconfig recover --install (on every master)"]))


@command(kubeconfig, "recover")
def kubeconfig_recover(options: GlobalOptions,
                       install: Annotated[bool, typer.Option(
                           help="Write /etc/kubernetes/kubeconfig, "
                           "/etc/kubernetes/kubelet-ca.crt and /run/machine-config-daemon-force"
                           " on this host.")] = False,
                       check: Annotated[bool, typer.Option(
                           help="Prove the kubeconfig works (TLS and token) before using it.")
                       ] = True) -> None:
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
    emit(options, Report("kubeconfig.installed",
                         f"installed {', '.join(recovered.installed)} ({recovered.checked})",
                         {"installed": recovered.installed, "kept": recovered.kept},
                         details=[f"kept the old kubeconfig as {k}" for k in recovered.kept],
                         next=["ocp-recovery kubelet reset"]))


@command(kubelet, "reset")
def kubelet_reset(options: GlobalOptions, dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Guide 3.4 step 7: stop kubelet, move its pki and kubeconfig aside, start it (it
    bootstraps again with /etc/kubernetes/kubeconfig)."""
    from toolbox.procedures import kubelet as procedure

    run_journaled(options, options.context(), procedure.PROCEDURE, None, dry_run=dry_run,
                  yes=yes)


@command(certs, "report")
def certs_report(options: GlobalOptions,
                 warn_days: Annotated[int, typer.Option(
                     help="Exit 13 when a certificate in use expires within this many days.")
                 ] = 30,
                 api: Annotated[bool, typer.Option(
                     help="Also read the certificates in the API (with the kubeconfig), when "
                     "it answers.")] = True) -> None:
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
