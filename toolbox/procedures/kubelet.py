"""Guide 3.4 step 7: `kubelet reset`, so the kubelet bootstraps again with new certificates.

The guide: `systemctl stop kubelet; rm -rf /var/lib/kubelet/pki /var/lib/kubelet/kubeconfig;
systemctl start kubelet`. Here nothing is deleted: both are moved aside with a timestamp the
plan fixes (so a resumed run moves to the same names), and a rollback puts them back. Before
any change it checks that /etc/kubernetes/kubeconfig, which the kubelet bootstraps with, is
there and parses: without it the kubelet could not join again. With neither pki nor
kubeconfig present there is nothing to reset and it refuses (a plain restart is
`systemctl restart kubelet`; a reset that moved nothing would only hide a wrong host).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from toolbox import log
from toolbox.context import Context
from toolbox.errors import InvalidInput, PreconditionFailed
from toolbox.host.files import move_path
from toolbox.host.runtime import Runtime
from toolbox.journal import (
    Confirmation,
    Journal,
    Plan,
    Procedure,
    Step,
    StepRun,
    new_operation_id,
)
from toolbox.kube.client import KubeClient
from toolbox.procedures import shared_steps
from toolbox.report import Report
from toolbox.waiting import wait_until

_log = log.get(__name__)

OPERATION = "kubelet-reset"
RESET = ("pki", "kubeconfig")
SUFFIX = ".ocp-recovery-"


@dataclass(frozen=True)
class ResetPlan(Plan):
    stamp: str
    moves: dict[str, list[str]]    # "pki"/"kubeconfig" -> [host path, host path set aside]


@dataclass(frozen=True)
class KubeletReset:
    moved: list[tuple[str, str]]   # host paths (from, to)

    def report(self) -> Report:
        return Report(
            "kubelet.reset", "kubelet reset: kubelet is active",
            {"moved": [list(pair) for pair in self.moved]},
            details=[f"moved {source} to {target}" for source, target in self.moved],
            next=["the kubelet asks for a new client certificate, then a serving one: "
                  "`ocp-recovery csr list`, then `ocp-recovery csr approve NAME` for each "
                  "(twice per node); `ocp-recovery rollback` puts the old pki and kubeconfig "
                  "back"])


class KubeletResetProcedure(Procedure[None, ResetPlan, KubeletReset]):
    operation = "kubelet-reset"
    plan_type = ResetPlan

    def plan(self, ctx: Context, request: None = None) -> ResetPlan:
        return plan(ctx)

    def steps(self, ctx: Context, plan: ResetPlan) -> list[Step[ResetPlan]]:
        shown = " and ".join(f"{s} to {t}" for s, t in plan.moves.values())
        return [
            Step("stop-kubelet", "systemctl stop kubelet.service", shared_steps.stop_kubelet,
                 shared_steps.start_kubelet_if_it_ran),
            Step("move-aside", f"move {shown}", _move_aside, _put_back),
            # Undone before the move back, so no kubelet writes into the pki meanwhile.
            Step("start-kubelet", "systemctl start kubelet.service (it bootstraps with "
                 f"{ctx.paths.shown(ctx.paths.bootstrap_kubeconfig)})", shared_steps.start_kubelet,
                 _stop_kubelet_only),
            Step("wait-kubelet-active", f"wait (<= {ctx.timeouts.health:.0f}s) until "
                 "kubelet.service is active", _wait_kubelet_active),
        ]

    def finish(self, ctx: Context, plan: ResetPlan, journal: Journal) -> KubeletReset:
        """The result of a finished run: its last step saw kubelet active."""
        moved = journal.fact("moved", [])
        _log.info("kubelet.reset", moved=moved, stamp=plan.stamp)
        return KubeletReset([(plan.moves[n][0], plan.moves[n][1]) for n in moved])

    def confirmation(self, plan: ResetPlan) -> Confirmation:
        return Confirmation("kubelet reset", "Restart kubelet with a new identity?")


PROCEDURE = KubeletResetProcedure()
OPERATION = PROCEDURE.operation


def _stop_kubelet_only(run: StepRun[ResetPlan]) -> None:
    Runtime(run.ctx.executor).stop_kubelet()


def _moves(run: StepRun[ResetPlan]) -> dict[str, tuple[Path, Path]]:
    host = run.ctx.paths.host
    return {n: (host(s), host(t)) for n, (s, t) in run.plan.moves.items()}


def _move_aside(run: StepRun[ResetPlan]) -> None:
    moves = _moves(run)
    moved = run.journal.fact("moved")
    if moved is None:  # decided once: a resumed run must not skip a half-made move
        moved = [n for n, (s, t) in moves.items()
                 if s.exists() or s.is_symlink() or t.exists()]
        run.journal.record("moved", moved)
    for name in moved:
        move_path(*moves[name])


def _put_back(run: StepRun[ResetPlan]) -> None:
    moves = _moves(run)
    for name in run.journal.fact("moved", []):
        source, target = moves[name]
        if not target.exists() and not target.is_symlink():
            continue
        if source.exists() or source.is_symlink():
            # What the kubelet made after the reset is kept too, never deleted.
            move_path(source, source.with_name(f"{target.name}.after-reset"))
        move_path(target, source)


def _wait_kubelet_active(run: StepRun[ResetPlan]) -> None:
    wait_until(Runtime(run.ctx.executor).kubelet_active, timeout=run.ctx.timeouts.health,
               what="kubelet.service to be active",
               next_step="systemctl status kubelet; journalctl -u kubelet")


def plan(ctx: Context, now: dt.datetime | None = None) -> ResetPlan:
    """Everything checked before the first change."""
    paths = ctx.paths
    bootstrap = paths.bootstrap_kubeconfig
    if not bootstrap.is_file():
        raise PreconditionFailed(
            f"{paths.shown(bootstrap)} does not exist: the kubelet would have nothing to "
            "bootstrap with after its pki and kubeconfig are moved aside",
            next_step="ocp-recovery kubeconfig recover --install, then run this again")
    try:
        KubeClient.from_file(bootstrap, paths.host, paths.shown(bootstrap)).close()
    except (InvalidInput, OSError) as exc:
        what = exc.what if isinstance(exc, InvalidInput) else str(exc)
        raise PreconditionFailed(
            f"{paths.shown(bootstrap)} is not a usable kubeconfig: {what}",
            next_step="ocp-recovery kubeconfig recover --install, then run this again"
        ) from exc
    kubelet_dir = paths.kubelet_dir
    shown = paths.shown(kubelet_dir)
    present = [n for n in RESET
               if (kubelet_dir / n).exists() or (kubelet_dir / n).is_symlink()]
    if not present:
        raise PreconditionFailed(
            f"nothing to reset: neither {shown}/pki nor {shown}/kubeconfig exists",
            next_step="check you are on the right host; a plain restart is "
            "`systemctl restart kubelet`, then `ocp-recovery csr list`")
    base = f"{now or dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
    stamp, extra = base, 0
    # A second reset within the same second must not move onto the first one's files.
    while any((kubelet_dir / f"{name}{SUFFIX}{stamp}").exists() for name in RESET):
        extra += 1
        stamp = f"{base}-{extra}"
    return ResetPlan(id=new_operation_id(OPERATION), warnings=(), stamp=stamp,
                     moves={n: [f"{shown}/{n}", f"{shown}/{n}{SUFFIX}{stamp}"]
                            for n in present})
