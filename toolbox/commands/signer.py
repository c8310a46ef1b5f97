"""`ocp-recovery signer …`: the etcd certificate signer for new masters (guide 3.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolbox.commands.common import GlobalOptions, command, emit, host_path
from toolbox.report import Report

commands = typer.Typer(help="The etcd certificate signer for new masters (guide 3.2).",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(commands, name="signer")


EXPECT_HELP = "etcd DNS name of a new master to sign for (repeat per master), e.g. "\
    "etcd-1.<cluster domain>; `sandbox add-master` prints the sandbox's."


@command(commands, "serve")
def serve(options: GlobalOptions,
          expect: Annotated[list[str], typer.Option(help=EXPECT_HELP)],
          ca_cert: Annotated[str, typer.Option(
              help="etcd CA cert, a host path (secret etcd-signer tls.crt).")],
          ca_key: Annotated[str, typer.Option(
              help="etcd CA key, a host path (secret etcd-signer tls.key).")],
          metric_ca_cert: Annotated[str, typer.Option(
              help="metric CA cert, a host path (etcd-metric-signer).")],
          metric_ca_key: Annotated[str, typer.Option(
              help="metric CA key, a host path (etcd-metric-signer).")],
          address: Annotated[str | None, typer.Option(
              help="IP:PORT to listen on (default: this master's etcd IP, port 9943).")
          ] = None,
          deadline: Annotated[float, typer.Option(help="Stop after this many seconds.")
                              ] = 3600) -> None:
    """Sign member certificates for the expected new masters; prints a one-time token."""
    from toolbox.procedures import signer as procedure

    context = options.context()
    request = procedure.SignerRequest(
        expect, (host_path(ca_cert, context), host_path(ca_key, context)),
        (host_path(metric_ca_cert, context), host_path(metric_ca_key, context)), address,
        context.signer_token, deadline)
    signer, where, cert, key = procedure.prepare(context, request)
    emit(options, procedure.listening(context, signer, where,
                                      token_shown=not context.signer_token))
    procedure.serve(signer, where, cert, key, deadline)
    emit(options, Report("signer.done", "signer done: every expected member has its "
                         "certificates", {"expected": sorted(signer.expected)}))


@command(commands, "manifest")
def manifest(options: GlobalOptions,
             hostname: Annotated[str, typer.Argument(
                 help="The survivor's kubernetes.io/hostname label, e.g. ip-10-0-143-125.")],
             expect: Annotated[list[str] | None, typer.Option(
                 help="etcd DNS name of a new master (repeat); default: every etcd-<n> of a "
                 "3-master cluster but this one.")] = None,
             image: Annotated[str | None, typer.Option(
                 help="The ocp-recovery image (env OCP_RECOVERY_IMAGE, or "
                 "KUBE_ETCD_SIGNER_SERVER as the guide exports it).")] = None,
             output: Annotated[Path, typer.Option(help="Where to write it.")] = Path(
                 "./assets/manifests/kube-etcd-cert-signer.yaml")) -> None:
    """Render the signer pod (and its one-time token) to run it through the API."""
    from toolbox.procedures import signer as procedure

    context = options.context()
    rendered = procedure.render_manifest(
        hostname, image or context.image or "localhost/ocp-recovery:latest",
        expect or procedure.default_expectations(context), context.signer_token)
    written = procedure.write_manifest(rendered, output)
    emit(options, Report(
        "signer.manifest", f"Tokenized template now ready: {written}",
        {"manifest": str(written), "token": rendered.token, "expect": rendered.expect},
        details=[f"token: {rendered.token}"],
        next=[f"oc create -f {written}; then on each new master "
              f"({', '.join(rendered.expect)}): export OCP_RECOVERY_SIGNER_TOKEN=<token>; "
              "ocp-recovery member recover <the survivor's etcd IP> etcd-member-<node>"]))
