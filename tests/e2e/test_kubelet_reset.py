"""Guide 3.4 `kubelet reset` on a 1-master sandbox, whose node agent plays kubelet: the pki
and kubeconfig are moved aside (never deleted), a refused run changes nothing, a killed run
resumes, and rollback puts them back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged, require_etcd, tree_fingerprint
from tests.e2e.helpers import REPO
from toolbox.context import Context, build_context
from toolbox.errors import PreconditionFailed
from toolbox.host.runtime import Runtime
from toolbox.journal import Journal, execute, plan_and_execute
from toolbox.kube import config as kubeconfig
from toolbox.pki import certs
from toolbox.procedures import inflight, kubelet
from toolbox.sandbox.cluster import Sandbox

VOLATILE = ("var/lib/etcd", "run/etcd")   # etcd writes there on its own


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_etcd("3.5")
    sb = Sandbox.up(tmp_path_factory.mktemp("kubelet-reset") / "sb", masters=1, etcd="3.5")
    yield sb
    sb.down()


@pytest.fixture
def ctx(sandbox: Sandbox) -> Context:
    """The Context ocp-recovery builds on master-0, with a kubelet pki and kubeconfig."""
    root = sandbox.root(0)
    pki = root / "var/lib/kubelet/pki"
    pki.mkdir(parents=True, exist_ok=True)
    server = pki / "kubelet-server-2026.pem"
    if not server.exists():
        ca = certs.self_signed_ca("kubelet-signer")
        pair = certs.issue(ca, common_name="system:node:master-0",
                           organizations=["system:nodes"], dns_names=["master-0"])
        server.write_bytes(pair.cert_pem() + pair.key_pem())
        (pki / "kubelet-server-current.pem").symlink_to(
            "/var/lib/kubelet/pki/kubelet-server-2026.pem")
    if not (root / "var/lib/kubelet/kubeconfig").exists():
        (root / "var/lib/kubelet/kubeconfig").write_text("kubelet's own kubeconfig\n")
    return build_context(sandbox.env_vars(0, dict(os.environ)), log_format="json")


def install_bootstrap_kubeconfig(root: Path) -> None:
    ca = certs.self_signed_ca("kube-apiserver-lb-signer")
    (root / "etc/kubernetes/kubeconfig").write_bytes(kubeconfig.render(
        cluster="local", server="https://api-int.example.test:6443", user="kubelet",
        context="kubelet", ca_pem=ca.cert_pem(), token="bootstrap-token"))


def kubelet_state(root: Path) -> tuple[dict[str, str], bytes]:
    """The pki tree's fingerprint and the kubeconfig's bytes."""
    kubelet_dir = root / "var/lib/kubelet"
    return tree_fingerprint(kubelet_dir / "pki"), (kubelet_dir / "kubeconfig").read_bytes()


def test_refused_without_a_usable_bootstrap_kubeconfig(ctx: Context, sandbox: Sandbox) -> None:
    root = sandbox.root(0)
    (root / "etc/kubernetes/kubeconfig").unlink(missing_ok=True)
    with assert_host_unchanged(root, VOLATILE), pytest.raises(PreconditionFailed) as refused:
        plan_and_execute(ctx, kubelet.PROCEDURE, None)
    assert "/etc/kubernetes/kubeconfig does not exist" in refused.value.what
    assert refused.value.next_step.startswith("ocp-recovery kubeconfig recover --install")

    (root / "etc/kubernetes/kubeconfig").write_text("clusters: [\n")
    with assert_host_unchanged(root, VOLATILE), \
            pytest.raises(PreconditionFailed, match="is not a usable kubeconfig"):
        plan_and_execute(ctx, kubelet.PROCEDURE, None)
    assert Runtime(ctx.executor).kubelet_active()


def test_reset_moves_aside_then_rollback_puts_back(ctx: Context, sandbox: Sandbox) -> None:
    root = sandbox.root(0)
    kubelet_dir = root / "var/lib/kubelet"
    install_bootstrap_kubeconfig(root)
    pki_before, kubeconfig_before = original = kubelet_state(root)

    with assert_host_unchanged(root, VOLATILE):
        plan = kubelet.PROCEDURE.plan(ctx, None)
        changes = kubelet.PROCEDURE.changes(ctx, plan)
    assert [c.split(":")[0].strip() for c in changes] == [
        "1. stop-kubelet", "2. move-aside", "3. start-kubelet", "4. wait-kubelet-active"]

    done = execute(ctx, kubelet.PROCEDURE, plan)
    stamp = plan.stamp
    assert done.moved == [
        ("/var/lib/kubelet/pki", f"/var/lib/kubelet/pki.ocp-recovery-{stamp}"),
        ("/var/lib/kubelet/kubeconfig", f"/var/lib/kubelet/kubeconfig.ocp-recovery-{stamp}")]
    assert Runtime(ctx.executor).kubelet_active()
    assert not (kubelet_dir / "pki").exists() and not (kubelet_dir / "kubeconfig").exists()
    assert tree_fingerprint(kubelet_dir / f"pki.ocp-recovery-{stamp}") == pki_before
    assert (kubelet_dir / f"kubeconfig.ocp-recovery-{stamp}").read_bytes() == \
        kubeconfig_before
    journal = Journal.load(ctx.paths.state_dir)
    assert journal is not None and journal.operation == "kubelet-reset"
    assert journal.status == "done" and journal.fact("moved") == ["pki", "kubeconfig"]

    # The restarted kubelet bootstraps and writes a new pki; a rollback keeps it aside.
    (kubelet_dir / "pki").mkdir()
    (kubelet_dir / "pki/kubelet-client-current.pem").write_text("new\n")
    inflight.rollback(ctx)
    assert kubelet_state(root) == original
    kept = kubelet_dir / f"pki.ocp-recovery-{stamp}.after-reset"
    assert (kept / "kubelet-client-current.pem").read_text() == "new\n"
    assert not (kubelet_dir / f"pki.ocp-recovery-{stamp}").exists()
    assert Runtime(ctx.executor).kubelet_active()
    assert inflight.status(ctx).journal.status == "rolled-back"  # type: ignore[union-attr]


def test_a_run_killed_after_the_move_resumes(ctx: Context, sandbox: Sandbox) -> None:
    root = sandbox.root(0)
    kubelet_dir = root / "var/lib/kubelet"
    install_bootstrap_kubeconfig(root)
    original = kubelet_state(root)
    killed = subprocess.run(
        [sys.executable, "-c", "import os, tests.faults; tests.faults.kill_after_step("
         "'move-aside'); from toolbox.context import build_context; "
         "from toolbox.procedures import kubelet; from toolbox.journal import plan_and_execute; "
         "plan_and_execute(build_context(os.environ), kubelet.PROCEDURE, None)"],
        env=sandbox.env_vars(0, dict(os.environ)), capture_output=True, text=True,
        timeout=120, cwd=REPO)
    assert killed.returncode == -9, killed.stderr
    runtime = Runtime(ctx.executor)
    assert not runtime.kubelet_active() and not (kubelet_dir / "pki").exists()
    told = inflight.status(ctx).report()
    assert told.details[-1].startswith("the run stopped part-way")
    assert told.next == ["ocp-recovery resume", "ocp-recovery rollback"]

    result = inflight.resume(ctx)
    assert isinstance(result, kubelet.KubeletReset)
    [(_, aside), _] = result.moved
    assert tree_fingerprint(ctx.paths.host(aside)) == original[0]
    assert runtime.kubelet_active()

    inflight.rollback(ctx)
    assert kubelet_state(root) == original and runtime.kubelet_active()
