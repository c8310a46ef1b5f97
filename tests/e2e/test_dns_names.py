"""Sandbox masters named by DNS, as the guide's INITIAL_CLUSTER names them
(`etcd-member-<node>=https://etcd-N.<domain>:2380`), through the real resolver: each command
runs under `unshare --mount` with its own /etc/hosts (and, to make the resolver hang, its
own /etc/resolv.conf). Every name is resolved before the first change: one that does not
resolve, resolves slowly, or is ambiguous is refused by name with the host unchanged; a
master named by any name that resolves to its etcd IP is found and restored (issue 13,
items 4 and 5)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ETCD_VERSIONS, assert_host_unchanged, missing, require_etcd
from tests.e2e.helpers import BIN, REPO, command, keys_in
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.layout import DOMAIN

ETCD_0 = f"etcd-0.{DOMAIN}"        # master-0's ETCD_DNS_NAME, as setup-etcd-environment wrote
ALIAS_0 = f"master-0.{DOMAIN}"     # another name of master-0's etcd IP
ETCD_1 = f"etcd-1.{DOMAIN}"        # master-1, stopped
UNRESOLVABLE = "etcd-9.cluster.invalid"  # .invalid never resolves (RFC 6761)
HOSTS = f"""127.0.0.1 localhost
127.0.0.11 {ETCD_0} {ALIAS_0}
127.0.0.12 {ETCD_1}
"""
# Restore refusals: etcd on master-0 runs (without quorum) and may write its data dir.
RUNNING_ETCD = ("var/lib/etcd",)
MEMBER_FILES = ("var/lib/etcd", "run/etcd")  # the node agent also rewrites the env file


@pytest.fixture(scope="module", params=ETCD_VERSIONS)
def two_masters(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Sandbox]:
    """Two masters with a backup taken on master-0, then master-1 lost: the cluster has no
    quorum, the case of a one-member restore (guide 3.2 step 1)."""
    require_etcd(request.param)
    sb = Sandbox.up(tmp_path_factory.mktemp(f"dns-{request.param}"), masters=2,
                    etcd=request.param)
    try:
        with workload.kv_client(sb, 0) as kv:
            workload.write(kv, "before", 50)
        done = command(sb, 0, "backup", "/home/core/backup")
        assert done.returncode == 0, done.stderr
        with workload.kv_client(sb, 0) as kv:
            workload.write(kv, "after", 10)
        sb.stop_master(1)
        yield sb
    finally:
        sb.down()


@pytest.fixture(scope="module")
def resolver_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The private /etc/hosts, and a /etc/resolv.conf whose server never answers."""
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        missing(f"a private mount namespace (unshare --mount: {probe.stderr.strip()})")
    directory = tmp_path_factory.mktemp("resolver")
    hosts = directory / "hosts"
    hosts.write_text(HOSTS)
    resolv = directory / "resolv.conf"
    resolv.write_text(f"nameserver {SILENT_DNS}\noptions timeout:30 attempts:1\n")
    return {"hosts": hosts, "resolv": resolv}


SILENT_DNS = "127.0.0.99"


@pytest.fixture
def silent_dns_server() -> Iterator[None]:
    """A DNS server that reads every query and answers none."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind((SILENT_DNS, 53))
    except OSError as exc:
        server.close()
        missing(f"a UDP socket on {SILENT_DNS}:53 ({exc})")
    yield
    server.close()


def named(sandbox: Sandbox, files: dict[str, Path], *args: str, program: str = "ocp-recovery",
          silent_dns: bool = False, extra_env: dict[str, str] | None = None,
          timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The installed `program` on master-0, resolving through the private /etc/hosts (and,
    with `silent_dns`, a DNS server that never answers)."""
    binds = [(files["hosts"], "/etc/hosts")]
    if silent_dns:
        binds.append((files["resolv"], "/etc/resolv.conf"))
    script = " && ".join(f"mount --bind {src} {dst}" for src, dst in binds) + ' && exec "$@"'
    env = sandbox.env_vars(0, dict(os.environ))
    env.update(extra_env or {})
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script, "sh", str(BIN / program), *args],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def restore_refused(sandbox: Sandbox, files: dict[str, Path], cluster: str, code: int
                    ) -> str:
    """A real restore (--yes; --no-wait, so that one that is wrongly accepted ends soon) is
    refused with `code` and master-0 is as it was."""
    with assert_host_unchanged(sandbox.root(0), RUNNING_ETCD):
        done = named(sandbox, files, "restore", "/home/core/backup", "--initial-cluster",
                     cluster, "--no-wait", "--yes")
    assert done.returncode == code, done.stdout + done.stderr
    assert "error: " in done.stderr and "next:" in done.stderr
    return done.stderr


def test_an_unresolvable_peer_host_is_refused_before_any_change(
        two_masters: Sandbox, resolver_files: dict[str, Path]) -> None:
    # 4.3 (and the toolbox before) stopped the control plane, then etcdutl failed on it.
    err = restore_refused(two_masters, resolver_files,
                          f"etcd-member-master-0=https://{ETCD_0}:2380,"
                          f"etcd-member-master-1=https://{UNRESOLVABLE}:2380", 3)
    assert (f"the host {UNRESOLVABLE} of INITIAL_CLUSTER entry etcd-member-master-1="
            f"https://{UNRESOLVABLE}:2380 does not resolve") in err


def test_a_resolver_that_never_answers_is_refused_within_the_dial_timeout(
        two_masters: Sandbox, resolver_files: dict[str, Path], silent_dns_server: None) -> None:
    started = time.monotonic()
    with assert_host_unchanged(two_masters.root(0), RUNNING_ETCD):
        done = named(two_masters, resolver_files, "--dial-timeout", "2", "restore",
                     "/home/core/backup", "--initial-cluster",
                     f"etcd-member-master-0=https://{ETCD_0}:2380,"
                     f"etcd-member-master-1=https://etcd-1.elsewhere.test:2380",
                     "--no-wait", "--yes", silent_dns=True, timeout=120)
    seconds = time.monotonic() - started
    assert done.returncode == 3, done.stdout + done.stderr
    assert ("the host etcd-1.elsewhere.test of INITIAL_CLUSTER entry etcd-member-master-1="
            "https://etcd-1.elsewhere.test:2380 does not resolve: no answer from the resolver "
            "within 2s") in done.stderr
    assert seconds < 20, f"took {seconds:.0f}s: the resolver's own 30 s timeout was waited"


def test_two_names_of_one_address_are_refused(two_masters: Sandbox,
                                              resolver_files: dict[str, Path]) -> None:
    # Accepted before: a two-member cluster whose second member is this same etcd.
    err = restore_refused(two_masters, resolver_files,
                          f"etcd-member-master-0=https://{ETCD_0}:2380,"
                          f"etcd-member-master-1=https://{ALIAS_0}:2380", 3)
    assert (f"entries etcd-member-master-0=https://{ETCD_0}:2380 and etcd-member-master-1="
            f"https://{ALIAS_0}:2380 both reach 127.0.0.11:2380") in err


def test_a_name_that_is_not_this_nodes_member_name_is_refused(
        two_masters: Sandbox, resolver_files: dict[str, Path]) -> None:
    # The node name comes from the kubelet's client certificate, on the sandbox as on RHCOS.
    err = restore_refused(two_masters, resolver_files,
                          f"etcd-member-master0=https://{ETCD_0}:2380", 3)
    assert "but node master-0's etcd member is 'etcd-member-master-0'" in err


def test_the_client_port_as_peer_port_is_refused(two_masters: Sandbox,
                                                 resolver_files: dict[str, Path]) -> None:
    err = restore_refused(two_masters, resolver_files,
                          f"etcd-member-master-0=https://{ETCD_0}:2379", 3)
    assert "2379 is etcd's client port; peers use 2380" in err


@pytest.mark.parametrize(("args", "code", "message"), [
    pytest.param(["add", "127.0.0.11", "etcd-member-master-0", "--peer-url",
                  f"https://{UNRESOLVABLE}:2380"], 3,
                 f"the host {UNRESOLVABLE} of --peer-url https://{UNRESOLVABLE}:2380 does "
                 "not resolve", id="add-unresolvable-peer-url"),
    pytest.param(["add", "127.0.0.11", "etcd-member-master-0", "--peer-url",
                  f"https://{ETCD_1}:2380"], 4,
                 f"--peer-url https://{ETCD_1}:2380 names this host, but {ETCD_1} resolves to "
                 "127.0.0.12, not to this host's ETCD_IPV4_ADDRESS 127.0.0.11",
                 id="add-peer-url-of-another-host"),
    pytest.param(["add", "127.0.0.11", "etcd-member-master-0", "--peer-url",
                  f"https://{ETCD_0}:2379"], 3, "2379 is etcd's client port; peers use 2380",
                 id="add-client-port"),
    pytest.param(["add", UNRESOLVABLE, "etcd-member-master-0"], 3,
                 f"the active member's address '{UNRESOLVABLE}' does not resolve",
                 id="add-unresolvable-active-member"),
    pytest.param(["add", "127.0.0.11", "etcd-member-master0"], 3,
                 "'etcd-member-master0' is not this host's member name: node master-0's etcd "
                 "member is 'etcd-member-master-0'", id="add-wrong-member-name"),
    pytest.param(["recover", UNRESOLVABLE, "etcd-member-master-0"], 3,
                 f"the active member's address '{UNRESOLVABLE}' does not resolve",
                 id="recover-unresolvable-signer"),
])
def test_member_add_and_recover_resolve_before_any_change(
        two_masters: Sandbox, resolver_files: dict[str, Path], args: list[str], code: int,
        message: str) -> None:
    with assert_host_unchanged(two_masters.root(0), MEMBER_FILES):
        done = named(two_masters, resolver_files, "member", *args, "--no-wait", "--yes",
                     extra_env={"OCP_RECOVERY_SIGNER_TOKEN": "a-token"})
    assert done.returncode == code, done.stdout + done.stderr
    assert message in done.stderr


def test_a_dry_run_with_the_guides_dns_names(two_masters: Sandbox,
                                             resolver_files: dict[str, Path]) -> None:
    """The form the guide gives, ETCD_DNS_NAME in the URL."""
    done = named(two_masters, resolver_files, "restore", "/home/core/backup", "--initial-cluster",
                 f"etcd-member-master-0=https://{ETCD_0}:2380", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"as member etcd-member-master-0 (https://{ETCD_0}:2380) of 1" in done.stdout


# ---- changes the sandbox: keep last in this module ---------------------------------------

def test_a_master_named_by_another_name_of_its_ip_is_restored(
        two_masters: Sandbox, resolver_files: dict[str, Path]) -> None:
    """Found by the address its name resolves to (not ETCD_DNS_NAME), restored through the
    4.3 script name; the member serves with the backup's data under that peer URL."""
    cluster = f"etcd-member-master-0=https://{ALIAS_0}:2380"
    done = named(two_masters, resolver_files, "/home/core/backup",
                 program="etcd-snapshot-restore.sh", extra_env={"INITIAL_CLUSTER": cluster})
    assert done.returncode == 0, done.stdout + done.stderr
    with two_masters.client(0) as client:
        members = client.members()
    assert [(m.name, m.peer_urls) for m in members] == \
        [("etcd-member-master-0", (f"https://{ALIAS_0}:2380",))]
    assert len(keys_in(two_masters, 0, "before")) == 50
    assert keys_in(two_masters, 0, "after") == set()
