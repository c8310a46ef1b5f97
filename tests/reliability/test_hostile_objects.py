"""Bad input to `objects restore` and `snapshot ls/get`, against a sandbox with the real
kube-apiserver (secrets encrypted at rest with aescbc): a key or namespace the backup does not
hold, no selection, a damaged snapshot, a backup of another cluster, a namespace Terminating
live, a value encrypted with a key the live encryption config no longer has. Each is refused
with its exit code, a message that names the problem and the next command, and leaves the
host tree and the live etcd's keys and values exactly as they were: nothing is written."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Outcome, assert_host_unchanged, require_etcd, require_kube_apiserver
from tests.e2e.helpers import command
from toolbox.etcd.snapshot import TRAILER
from toolbox.kube.client import KubeClient
from toolbox.sandbox.cluster import Sandbox

pytestmark = [pytest.mark.hostile("objects"), pytest.mark.timeout(300)]

BACKUP = "/home/core/backup"
FOREIGN = "/home/core/foreign-backup"
PRICES = "/kubernetes.io/configmaps/shop/prices"
TOKEN = "/kubernetes.io/secrets/shop/token"
PLAIN = "/kubernetes.io/configmaps/leaving/plain"
# A ConfigMap value that appears once in the snapshot file: a changed digit there is an
# object still well-formed, with other data.
MARKED = "price-list-0123456789"
LIVE_ENCRYPTION = ("etc/kubernetes/static-pod-resources/kube-apiserver-pod-10/secrets/"
                   "encryption-config/encryption-config")
# What the live etcd holds that the control plane rewrites by itself: the API server's
# compaction mark every 5 minutes, leases and events.
SELF_WRITTEN = (b"compact_rev_key", b"/leases/", b"/events/")


# ---- helpers shared with test_faults_objects.py --------------------------------------------

def kubectl(sandbox: Sandbox, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", "--kubeconfig", str(sandbox.admin_kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def apply(sandbox: Sandbox, *objects: dict[str, Any]) -> None:
    kubectl(sandbox, "apply", "-f", "-", stdin=yaml.safe_dump_all(objects))


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def configmap(ns: str, name: str, data: dict[str, str] | None = None,
              **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, **metadata}, "data": data or {}}


def kube_system_uid(sandbox: Sandbox) -> str:
    return kubectl(sandbox, "get", "namespace", "kube-system", "-o",
                   "jsonpath={.metadata.uid}")


def api_sandbox(directory: Path, *objects: dict[str, Any]) -> Sandbox:
    """A 1-master sandbox with the real kube-apiserver holding `objects`, backed up into
    BACKUP."""
    binary = require_kube_apiserver()
    require_etcd("3.5")
    sandbox = Sandbox.up(directory, masters=1, etcd="3.5", kube_apiserver=binary)
    try:
        apply(sandbox, *objects)
        done = command(sandbox, 0, "backup", BACKUP)
        assert done.returncode == 0, done.stderr
    except BaseException:
        sandbox.down()
        raise
    return sandbox


def etcd_dump(sandbox: Sandbox) -> dict[bytes, bytes]:
    """Every live key and its value, but those the control plane rewrites by itself."""
    with sandbox.client(0, timeout=10) as client:
        keys = [k for k, _ in client.keys(b"") if not any(s in k for s in SELF_WRITTEN)]
        found = {k: client.get(k) for k in keys}
    return {k: v.value for k, v in found.items() if v is not None}


@contextlib.contextmanager
def assert_live_unchanged(sandbox: Sandbox) -> Iterator[None]:
    """The block leaves master-0's host tree (but the live data dir, which the etcd
    comparison covers) and every key and value of the live etcd as they were."""
    before = etcd_dump(sandbox)
    with assert_host_unchanged(sandbox.root(0), ("var/lib/etcd",)):
        yield
    after = etcd_dump(sandbox)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the live etcd changed: {changed[:20]}"


def cli(run_cli: Any, sandbox: Sandbox, *args: str, exit_code: int | None = 0) -> Outcome:
    """The CLI in this process, as on master-0."""
    outcome: Outcome = run_cli(list(args), env=sandbox.env_vars(0, dict(os.environ)),
                               exit_code=exit_code)
    return outcome


def refused(run_cli: Any, sandbox: Sandbox, args: list[str], exit_code: int, said: str,
            next_step: str) -> Outcome:
    """Refused with `exit_code`, saying `said` and the next command, nothing changed."""
    with assert_live_unchanged(sandbox):
        outcome = cli(run_cli, sandbox, *args, exit_code=exit_code)
    assert "\nerror: " in "\n" + outcome.stderr, outcome.stderr  # rendered, no traceback
    assert said in outcome.stderr, outcome.stderr
    assert "\nnext: " in outcome.stderr and next_step in outcome.stderr, outcome.stderr
    return outcome


# ---- the cluster, and a backup of another one ------------------------------------------------

@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A backup of another cluster holding the same namespace and ConfigMap, and that
    cluster's kube-system uid; its sandbox is gone before the cluster's comes up (both
    use master-0's address)."""
    directory = tmp_path_factory.mktemp("objects-foreign")
    other = api_sandbox(directory / "sb", namespace("shop"), configmap("shop", "prices"))
    try:
        uid = kube_system_uid(other)
        kept = shutil.copytree(other.root(0) / BACKUP.lstrip("/"), directory / "backup")
    finally:
        other.down()
    return {"backup": kept, "uid": uid}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, foreign: dict[str, Any]
            ) -> Iterator[Sandbox]:
    """Backed up: namespace shop (two ConfigMaps, an encrypted Secret) and namespace
    leaving (a ConfigMap held by a finalizer, another). Then, live: shop's `prices` and
    `token` deleted, leaving's `plain` deleted and the namespace deleted: Terminating, as
    its held ConfigMap keeps it."""
    token = base64.b64encode(b"s3cr3t").decode()
    sandbox = api_sandbox(
        tmp_path_factory.mktemp("objects-hostile") / "sb",
        namespace("shop"), namespace("leaving"),
        configmap("shop", "prices", {"list": MARKED}), configmap("shop", "menu", {"soup": "1"}),
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"t": token},
         "metadata": {"name": "token", "namespace": "shop"}},
        configmap("leaving", "held", finalizers=["example.com/hold"]),
        configmap("leaving", "plain"))
    try:
        kubectl(sandbox, "delete", "configmap", "prices", "-n", "shop")
        kubectl(sandbox, "delete", "secret", "token", "-n", "shop")
        kubectl(sandbox, "delete", "configmap", "plain", "-n", "leaving")
        kubectl(sandbox, "delete", "namespace", "leaving", "--wait=false")
        shutil.copytree(foreign["backup"], sandbox.root(0) / FOREIGN.lstrip("/"))
        settle_terminating(sandbox, "leaving")
        yield sandbox
    finally:
        sandbox.down()


def settle_terminating(sandbox: Sandbox, name: str, timeout: float = 15) -> None:
    """Where the sandbox runs a namespace controller, let its pass over the Terminating
    namespace end (its content deleted, then its conditions set, a few seconds after the
    deletion; after that it writes nothing more): the comparisons of etcd would see it.
    Without one the conditions never come and the namespace simply stays Terminating."""
    api = KubeClient.from_file(sandbox.admin_kubeconfig, timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = api.get("Namespace", name)
        if found and found.get("status", {}).get("conditions"):
            return
        time.sleep(0.2)


# ---- what the selection names is not there ----------------------------------------------------

NOPE = "/kubernetes.io/configmaps/shop/nope"
LS_PREFIX = f"ocp-recovery snapshot ls {BACKUP} --prefix /kubernetes.io/configmaps/shop/"
SAY_WHAT = "say what to restore: --namespace NS, --object KEY…, or --resource R --namespace NS"


@pytest.mark.parametrize(("args", "said", "next_step"), [
    pytest.param(["objects", "restore", BACKUP, "--object", NOPE, "--yes"],
                 f"{BACKUP} holds no key {NOPE} (at revision", LS_PREFIX, id="key-not-in-backup"),
    # One good key beside it: refused whole, the good one is not written either.
    pytest.param(["objects", "restore", BACKUP, "--object", PRICES, "--object", NOPE, "--yes"],
                 f"{BACKUP} holds no key {NOPE}", LS_PREFIX, id="one-key-of-two-not-in-backup"),
    pytest.param(["objects", "restore", BACKUP, "--namespace", "nothing-here", "--yes"],
                 f"{BACKUP} holds nothing of namespace nothing-here",
                 f"ocp-recovery snapshot ls {BACKUP} --namespace nothing-here",
                 id="namespace-with-nothing-in-backup"),
    pytest.param(["objects", "restore", BACKUP, "--namespace", "shop", "--resource", "widgets",
                  "--yes"], f"{BACKUP} holds nothing of namespace shop, resource widgets",
                 f"ocp-recovery snapshot ls {BACKUP} --namespace shop",
                 id="resource-with-nothing-in-backup"),
    pytest.param(["objects", "restore", BACKUP, "--yes"], SAY_WHAT,
                 f"ocp-recovery snapshot ls {BACKUP}", id="no-selection"),
    pytest.param(["objects", "restore", BACKUP, "--resource", "configmaps", "--yes"], SAY_WHAT,
                 f"ocp-recovery snapshot ls {BACKUP}", id="resource-without-namespace"),
    pytest.param(["snapshot", "get", BACKUP, NOPE], f"{BACKUP} holds no key '{NOPE}'",
                 LS_PREFIX, id="get-key-not-in-backup"),
    pytest.param(["snapshot", "get", BACKUP, PRICES.lstrip("/")],
                 f"'{PRICES.lstrip('/')}' is not an etcd key (they start with /",
                 f"ocp-recovery snapshot ls {BACKUP} --namespace NAMESPACE",
                 id="get-key-without-slash"),
    pytest.param(["-o", "yaml", "snapshot", "ls", BACKUP],
                 "-o yaml prints one object: only `snapshot get` takes it",
                 "use -o json or -o console with ls", id="yaml-output-of-ls"),
    pytest.param(["-o", "raw", "objects", "restore", BACKUP, "--object", PRICES, "--yes"],
                 "-o raw prints one object: only `snapshot get` takes it",
                 "use -o json or -o console with restore", id="raw-output-of-restore"),
])
def test_a_selection_the_backup_cannot_serve_is_invalid_input(
        run_cli, cluster: Sandbox, args: list[str], said: str, next_step: str) -> None:  # type: ignore[no-untyped-def]
    refused(run_cli, cluster, args, 3, said, next_step)


# ---- a damaged snapshot: exit 6 before anything is written ----------------------------------

def _recompute_trailer(damage: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """The damage done to the db, then a trailer that matches it: what a copy tool that
    re-hashed, or a forger, leaves; the db itself (or the set's manifest) must tell."""
    return lambda data: (db := damage(data[:-TRAILER])) + hashlib.sha256(db).digest()


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 4]) + data[middle + 4:]


def _zero_meta_pages(data: bytes) -> bytes:
    return bytes(2 * 4096) + data[2 * 4096:]


def _change_a_value(data: bytes) -> bytes:
    assert data.count(MARKED.encode()) >= 1
    return data.replace(MARKED.encode(), MARKED.replace("0", "9").encode())


DAMAGES = [
    pytest.param(_flip_middle, "the sha256 trailer does not match", id="flipped-middle"),
    pytest.param(lambda data: data[:len(data) // 2], "the sha256 trailer does not match",
                 id="truncated"),
    pytest.param(_zero_meta_pages, "the sha256 trailer does not match", id="zeroed-meta-pages"),
    pytest.param(_recompute_trailer(_zero_meta_pages),
                 "is not a valid etcd database: not a bbolt file",
                 id="zeroed-meta-pages-trailer-recomputed"),
    pytest.param(_recompute_trailer(lambda db: db[:len(db) // 2]),
                 "is not a valid etcd database", id="truncated-trailer-recomputed"),
    # Well-formed, decodable, wrong: only the manifest the backup wrote knows.
    pytest.param(_recompute_trailer(_change_a_value), "is not the snapshot its backup manifest",
                 id="value-changed-trailer-recomputed"),
]
COMMANDS = [
    pytest.param(["objects", "restore", "{backup}", "--namespace", "shop", "--yes"],
                 id="objects-restore"),
    pytest.param(["snapshot", "ls", "{backup}"], id="snapshot-ls"),
    pytest.param(["snapshot", "get", "{backup}", PRICES], id="snapshot-get"),
]


def damaged_copy(sandbox: Sandbox, name: str, damage: Callable[[bytes], bytes]) -> str:
    """The backup set copied to /home/core/NAME with its snapshot damaged by `damage`."""
    target = sandbox.root(0) / "home/core" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(sandbox.root(0) / BACKUP.lstrip("/"), target)
    [snapshot] = target.glob("snapshot_*.db")
    snapshot.write_bytes(damage(snapshot.read_bytes()))
    return f"/home/core/{name}"


@pytest.mark.parametrize("args", COMMANDS)
@pytest.mark.parametrize(("damage", "said"), DAMAGES)
def test_a_damaged_snapshot_is_refused_before_anything_is_written(
        run_cli, cluster: Sandbox, args: list[str],  # type: ignore[no-untyped-def]
        damage: Callable[[bytes], bytes], said: str) -> None:
    backup = damaged_copy(cluster, "damaged", damage)
    # prices and token are absent live: a restore that got past the check would write them.
    refused(run_cli, cluster, [a.format(backup=backup) for a in args], 6, said,
            "use another backup")


# ---- the live cluster refuses the restore -----------------------------------------------------

@pytest.mark.parametrize("selection", [
    pytest.param(["--object", PRICES], id="object"),
    pytest.param(["--namespace", "shop"], id="namespace"),
])
def test_a_backup_of_another_cluster_is_refused(
        run_cli, cluster: Sandbox, foreign: dict[str, Any], selection: list[str]) -> None:  # type: ignore[no-untyped-def]
    """It holds the same namespace and ConfigMap (absent live): only the identity tells."""
    err = refused(run_cli, cluster, ["objects", "restore", FOREIGN, *selection, "--yes"], 4,
                  f"{FOREIGN} is of another cluster: its identity is kube-system namespace "
                  f"uid {foreign['uid']}, the live cluster's is kube-system namespace uid "
                  f"{kube_system_uid(cluster)}", "give a backup of this cluster").stderr
    assert foreign["uid"] != kube_system_uid(cluster), err


@pytest.mark.parametrize("selection", [
    pytest.param(["--namespace", "leaving"], id="namespace"),
    pytest.param(["--resource", "configmaps", "--namespace", "leaving"], id="resource"),
    # Named by its key alone, an object of that namespace is refused all the same.
    pytest.param(["--object", PLAIN], id="object"),
])
def test_a_namespace_terminating_live_is_refused(run_cli, cluster: Sandbox,  # type: ignore[no-untyped-def]
                                                 selection: list[str]) -> None:
    assert "Terminating" in kubectl(cluster, "get", "namespace", "leaving")
    refused(run_cli, cluster, ["objects", "restore", BACKUP, *selection, "--yes"], 4,
            "namespace leaving is Terminating in the live cluster (deletion requested at",
            "wait until it is gone (`oc get namespace leaving` says NotFound)")


def _rename_the_key(config: dict[str, Any]) -> None:
    config["resources"][0]["providers"][0]["aescbc"]["keys"][0]["name"] = "rotated-away"


def _change_the_secret(config: dict[str, Any]) -> None:
    config["resources"][0]["providers"][0]["aescbc"]["keys"][0]["secret"] = \
        base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.mark.parametrize(("change", "said"), [
    pytest.param(_rename_the_key, "are encrypted with aescbc key '1', which the live "
                 "encryption config /" + LIVE_ENCRYPTION + " no longer has", id="key-renamed"),
    # Its name is there, its secret is another: the API server could not read it either.
    pytest.param(_change_the_secret, "do not decrypt with aescbc key '1' of the live "
                 "encryption config /" + LIVE_ENCRYPTION, id="key-of-that-name-changed"),
])
@pytest.mark.parametrize("selection", [
    pytest.param(["--object", TOKEN], id="object"),
    pytest.param(["--namespace", "shop"], id="namespace"),
])
def test_a_value_the_live_encryption_config_cannot_read_is_refused(
        run_cli, cluster: Sandbox, change: Callable[[dict[str, Any]], None], said: str,  # type: ignore[no-untyped-def]
        selection: list[str]) -> None:
    """The live config edited as a key rotation would leave it (the running API server
    need not know): the Secret's value is encrypted with a key it does not have."""
    live = cluster.root(0) / LIVE_ENCRYPTION
    kept = live.read_bytes()
    config = yaml.safe_load(kept)
    change(config)
    live.write_text(yaml.safe_dump(config))
    try:
        refused(run_cli, cluster, ["objects", "restore", BACKUP, *selection, "--yes"], 4, said,
                "ocp-recovery snapshot get")
    finally:
        live.write_bytes(kept)
