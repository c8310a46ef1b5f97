"""`member recover` (a blank master, certificates from the signer) killed after it got its
certificates, while etcd stops, after the member add and after etcd's manifest is back:
`resume` brings it up healthy with the data; `rollback` removes the member and gives back
the blank host as it was. Killed after any of the signer's answers, even the last (the
signer then gone): `resume` needs no signer for what it got. Refused at a later request, or
short of space while it writes the pairs: the host is as it was, nothing in flight."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged, require_etcd
from tests.e2e.helpers import assert_rollback_gives_back, assert_stopped_at, command, member_names
from tests.reliability.signing import csr_body, post
from toolbox.pki.profiles import member_cert_requests
from toolbox.procedures.member_recover import SIGNER_PORT
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drills import start_signer
from toolbox.sandbox.layout import DOMAIN, SANDBOX_PEER_IPS

STEPS = ["request-certificates", "stop-etcd@0.05", "member-add", "start-etcd"]
IGNORED = ("var/lib/etcd", "var/lib/ocp-recovery", "run/etcd",
           # what the signer gave it: kept, so a second recover needs no second signing
           "etc/kubernetes/static-pod-resources/etcd-member")
MEMBER_DIR = "etc/kubernetes/static-pod-resources/etcd-member"
STATE_DIR = "var/lib/ocp-recovery"  # ours: the kept keys and answers, the journal
pytestmark = pytest.mark.fault("member-recover")


@pytest.fixture
def blank_master(tmp_path: Path) -> Iterator[tuple[Sandbox, int, str]]:
    """master-2 lost and removed; a blank master added; the signer up on master-0."""
    require_etcd("3.5")
    sandbox = Sandbox.up(tmp_path / "sb", masters=3, etcd="3.5")
    try:
        with workload.kv_client(sandbox, 0) as kv:
            workload.write(kv, "before", 200)
        sandbox.stop_master(2)
        removed = command(sandbox, 0, "member", "remove", "etcd-member-master-2", "--yes")
        assert removed.returncode == 0, removed.stderr
        sandbox.wipe_master(2)
        new = sandbox.add_master()
        _, token, failures = start_signer(sandbox, 0, [sandbox.spec(new).dns_name],
                                          dict(os.environ))
        assert not failures
        yield sandbox, new, token
    finally:
        sandbox.down()


def recover(sandbox: Sandbox, index: int, token: str, *extra: str,
            kill: str | None = None, kill_when: str | None = None) -> None:
    done = command(sandbox, index, "member", "recover", sandbox.spec(0).ip,
                   sandbox.spec(index).member_name, "--yes", *extra,
                   extra_env={"OCP_RECOVERY_SIGNER_TOKEN": token}, kill_after=kill,
                   kill_when=kill_when)
    assert done.returncode == (-9 if kill or kill_when else 0), done.stderr
    if kill:
        assert_stopped_at(sandbox, index, kill)


def resume_joins(sandbox: Sandbox, new: int, token: str | None) -> None:
    """`resume` (with the same token, or none) finishes: the member joined, healthy, with
    the data."""
    resumed = command(sandbox, new, "resume",
                      extra_env={"OCP_RECOVERY_SIGNER_TOKEN": token} if token else None)
    assert resumed.returncode == 0, resumed.stderr
    sandbox.wait_healthy([0, 1, new], 60)
    assert member_names(sandbox) == sorted(["etcd-member-master-0", "etcd-member-master-1",
                                       sandbox.spec(new).member_name])
    assert len(workload.read_group(sandbox, new, "before")) == 200


def wait_until_nothing_listens(ip: str, port: int, seconds: float = 10) -> None:
    """The signer has exited (it polls for its spent token): its port refuses."""
    ends = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((ip, port), timeout=1).close()
        except ConnectionRefusedError:
            return
        except ConnectionResetError:
            pass  # caught as it closes its listening socket: ask again
        assert time.monotonic() < ends, f"something still listens at {ip}:{port}"
        time.sleep(0.1)


@pytest.mark.parametrize("step", STEPS)
def test_resume_after_a_kill(blank_master: tuple[Sandbox, int, str], step: str) -> None:
    sandbox, new, token = blank_master
    recover(sandbox, new, token, kill=step)
    resume_joins(sandbox, new, token)


def test_resume_after_a_kill_between_the_signers_answer_and_the_write(
        blank_master: tuple[Sandbox, int, str]) -> None:
    # The signer has issued the first certificate; the agent dies holding it. The resume
    # uses the answer it kept and asks the still-running signer for the other two.
    sandbox, new, token = blank_master
    recover(sandbox, new, token, kill_when="toolbox.pki.agent:_post")
    assert not list((sandbox.root(new) / MEMBER_DIR).glob("system:etcd-*")), \
        "killed before anything was written"
    resume_joins(sandbox, new, token)


def test_killed_after_each_answer_the_last_one_with_the_signer_gone(
        blank_master: tuple[Sandbox, int, str]) -> None:
    # Killed as each answer arrives: server, then (resumed) peer, then metric. With the last
    # answer the token is spent and `signer serve` exits; the resume needs neither.
    sandbox, new, token = blank_master
    recover(sandbox, new, token, kill_when="toolbox.pki.agent:_post")
    for kind in ("peer", "metric"):
        killed = command(sandbox, new, "resume", kill_when="toolbox.pki.agent:_post",
                         extra_env={"OCP_RECOVERY_SIGNER_TOKEN": token})
        assert killed.returncode == -9, f"{kind}: {killed.stderr}"
    wait_until_nothing_listens(sandbox.spec(0).ip, SIGNER_PORT)
    assert not list((sandbox.root(new) / MEMBER_DIR).glob("system:etcd-*")), \
        "nothing is written before the last answer is kept"
    resume_joins(sandbox, new, None)


@pytest.mark.parametrize("refused", ["peer", "metric"])
def test_a_later_request_refused_leaves_the_host_as_it_was(
        blank_master: tuple[Sandbox, int, str], refused: str) -> None:
    # Someone (a recover whose keys were lost) already got this member's certificates from
    # the `refused` one on, for other keys: the signer answers the server request (and the
    # peer one), its token is then spent: it refuses the next (401), or has already exited.
    sandbox, new, token = blank_master
    spec = sandbox.spec(new)
    requests = member_cert_requests(spec.dns_name, spec.ip, DOMAIN, SANDBOX_PEER_IPS)
    kinds = [r.kind for r in requests]
    for other in requests[kinds.index(refused):]:
        status, text = post(f"https://{sandbox.spec(0).ip}:{SIGNER_PORT}",
                            sandbox.pki.etcd_ca.cert_pem(),
                            csr_body(other.common_name, other.organization,
                                     list(other.dns_names), list(other.ip_addresses)), token)
        assert status == 200, text
    with assert_host_unchanged(sandbox.root(new), (STATE_DIR,)):
        done = command(sandbox, new, "member", "recover", sandbox.spec(0).ip,
                       spec.member_name, "--yes",
                       extra_env={"OCP_RECOVERY_SIGNER_TOKEN": token})
    assert done.returncode not in (0, 1), done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"the signer at https://{sandbox.spec(0).ip}:{SIGNER_PORT}" in error or \
        "connection refused" in error, done.stderr
    assert "state: unchanged" in done.stderr, done.stderr
    status_text = command(sandbox, new, "status").stdout
    assert "nothing-changed" in status_text and "nothing to resume" in status_text, status_text
    wait_until_nothing_listens(sandbox.spec(0).ip, SIGNER_PORT)


def test_no_space_while_the_pairs_are_written(blank_master: tuple[Sandbox, int, str],
                                             mount_tmpfs) -> None:  # type: ignore[no-untyped-def]
    # All three answers got (the signer, its token spent, exits), and the member directory
    # has room for three of the six files: the pairs written are taken back. With room
    # again, the same command installs what it kept, with no signer.
    sandbox, new, token = blank_master
    member_dir = sandbox.root(new) / MEMBER_DIR
    blank = sorted(member_dir.iterdir())
    kept = {p.name: (p.read_bytes(), p.stat().st_mode) for p in blank}
    dir_mode = member_dir.stat().st_mode
    mount_tmpfs(member_dir, size=f"{(len(blank) + 3) * 4}k")  # a 4 KiB page a file
    for name, (data, mode) in kept.items():
        (member_dir / name).write_bytes(data)
        os.chmod(member_dir / name, mode)
    os.chmod(member_dir, dir_mode)
    args = ["member", "recover", sandbox.spec(0).ip, sandbox.spec(new).member_name, "--yes"]
    env = {"OCP_RECOVERY_SIGNER_TOKEN": token}
    with assert_host_unchanged(sandbox.root(new), (STATE_DIR,)):
        done = command(sandbox, new, *args, extra_env=env)
    assert "ran out of space" in done.stderr and "state: unchanged" in done.stderr, \
        done.stderr
    assert "nothing-changed" in command(sandbox, new, "status").stdout
    wait_until_nothing_listens(sandbox.spec(0).ip, SIGNER_PORT)
    subprocess.run(["umount", str(member_dir)], check=True)
    again = command(sandbox, new, *args, extra_env=env)
    assert again.returncode == 0, again.stderr
    sandbox.wait_healthy([0, 1, new], 60)
    assert len(workload.read_group(sandbox, new, "before")) == 200


@pytest.mark.parametrize("step", STEPS)
def test_rollback_after_a_kill(blank_master: tuple[Sandbox, int, str], step: str) -> None:
    sandbox, new, token = blank_master
    assert_rollback_gives_back(sandbox, new, IGNORED,
                               lambda: recover(sandbox, new, token, kill=step))
    assert member_names(sandbox) == ["etcd-member-master-0", "etcd-member-master-1"]
    sandbox.wait_healthy([0, 1], 30)
