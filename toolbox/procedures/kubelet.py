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
from dataclasses import dataclass, field
from typing import Any

from toolbox import log
from toolbox.context import Context
from toolbox.errors import InvalidInput, PreconditionFailed
from toolbox.host.files import move_path
from toolbox.host.runtime import Runtime, wait_until
from toolbox.journal import Journal, Step, describe, execute
from toolbox.kube import config as kubeconfig

_log = log.get(__name__)

OPERATION = "kubelet-reset"
RESET = ("pki", "kubeconfig")
SUFFIX = ".ocp-recovery-"


@dataclass
class KubeletReset:
    plan: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)   # host paths (from, to)
    kubelet_active: bool = False  # a finished run's last step waited until it was
    dry_run: bool = False

    def lines(self) -> list[str]:
        if self.dry_run:
            return ["would change (dry run, nothing changed):", *self.changes]
        lines = [f"moved {source} to {target}" for source, target in self.moved]
        lines.append("kubelet is active")
        lines += ["next: the kubelet asks for a new client certificate, then a serving one: "
                  "`ocp-recovery csr list`, then `ocp-recovery csr approve NAME` for each "
                  "(twice per node)",
                  "`ocp-recovery rollback` puts the old pki and kubeconfig back"]
        return lines


def plan(ctx: Context, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything checked before the first change."""
    paths = ctx.paths
    bootstrap = paths.bootstrap_kubeconfig
    if not bootstrap.is_file():
        raise PreconditionFailed(
            f"{paths.shown(bootstrap)} does not exist: the kubelet would have nothing to "
            "bootstrap with after its pki and kubeconfig are moved aside",
            next_step="ocp-recovery kubeconfig recover --install, then run this again")
    try:
        kubeconfig.load(bootstrap, paths.host)
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
    return {"stamp": stamp,
            "moves": {n: [f"{shown}/{n}", f"{shown}/{n}{SUFFIX}{stamp}"]
                      for n in present}}


def steps(ctx: Context, journal: Journal) -> list[Step]:
    the_plan = journal.plan
    paths = ctx.paths
    runtime = Runtime(ctx.executor)
    moves = {n: (paths.host(s), paths.host(t)) for n, (s, t) in the_plan["moves"].items()}

    def stop_kubelet() -> None:
        if journal.fact("kubelet_was_active") is None:
            journal.record("kubelet_was_active", runtime.kubelet_active())
        runtime.stop_kubelet()

    def start_kubelet_if_it_ran() -> None:
        if journal.fact("kubelet_was_active", True):
            runtime.start_kubelet()

    def move_aside() -> None:
        moved = journal.fact("moved")
        if moved is None:  # decided once: a resumed run must not skip a half-made move
            moved = [n for n, (s, t) in moves.items()
                     if s.exists() or s.is_symlink() or t.exists()]
            journal.record("moved", moved)
        for name in moved:
            move_path(*moves[name])

    def put_back() -> None:
        for name in journal.fact("moved", []):
            source, target = moves[name]
            if not target.exists() and not target.is_symlink():
                continue
            if source.exists() or source.is_symlink():
                # What the kubelet made after the reset is kept too, never deleted.
                move_path(source, source.with_name(f"{target.name}.after-reset"))
            move_path(target, source)

    shown = " and ".join(f"{s} to {t}" for s, t in the_plan["moves"].values())
    return [
        Step("stop-kubelet", "systemctl stop kubelet.service", stop_kubelet,
             start_kubelet_if_it_ran),
        Step("move-aside", f"move {shown}", move_aside, put_back),
        # Undone before the move back, so no kubelet writes into the pki meanwhile.
        Step("start-kubelet", "systemctl start kubelet.service (it bootstraps with "
             f"{paths.shown(paths.bootstrap_kubeconfig)})", runtime.start_kubelet,
             runtime.stop_kubelet),
        Step("wait-kubelet-active", f"wait (<= {ctx.timeouts.health:.0f}s) until "
             "kubelet.service is active",
             lambda: wait_until(runtime.kubelet_active, timeout=ctx.timeouts.health,
                                what="kubelet.service to be active",
                                next_step="systemctl status kubelet; journalctl -u kubelet")),
    ]


def dry_run(ctx: Context) -> tuple[dict[str, Any], list[str]]:
    the_plan = plan(ctx)
    return the_plan, describe(steps(ctx, Journal.in_memory(the_plan)))


def run(ctx: Context, *, dry_run: bool = False,
        checked_plan: dict[str, Any] | None = None) -> KubeletReset:
    """`checked_plan`: the plan a --dry-run or confirmation just made (not checked again;
    the journal refuses if another operation began since)."""
    the_plan = checked_plan or plan(ctx)
    changes = describe(steps(ctx, Journal.in_memory(the_plan)))
    if dry_run:
        return KubeletReset(the_plan, changes, dry_run=True)
    execute(ctx.paths.state_dir, OPERATION, the_plan, lambda j: steps(ctx, j))
    result = finish(ctx, the_plan)
    result.changes = changes
    return result


def finish(ctx: Context, the_plan: dict[str, Any]) -> KubeletReset:
    """The result of a finished run: its last step saw kubelet active."""
    journal = Journal.load(ctx.paths.state_dir)
    moved = journal.fact("moved", []) if journal else []
    pairs = [the_plan["moves"][n] for n in moved]
    result = KubeletReset(the_plan, moved=[(source, target) for source, target in pairs],
                          kubelet_active=True)
    _log.info("kubelet.reset", moved=moved, stamp=the_plan["stamp"])
    return result
