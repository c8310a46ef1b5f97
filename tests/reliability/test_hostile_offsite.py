"""Bad input to off-site backups, against a real Ceph RADOS Gateway: a push to the wrong
credentials, bucket, certificate or address, or with no one to encrypt to, is refused with
its exit code and leaves nothing on the store; a stored set that was damaged (a flipped
byte, a cut, a manifest that does not match or names a host file) is refused by `fetch` and
`restore s3://` with exit 6 before the host is touched; the wrong identity is exit 3 and
writes nothing; a damaged set neither hides the others nor stands in for the newest."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.hostile import ETCD_IP, TIMESTAMP, backup_set, flip, master_root, refused
from toolbox.sandbox.objectstore import ObjectStore

pytestmark = pytest.mark.hostile("offsite")

BUCKET = "offsite-hostile"
PLAIN_BUCKET = "offsite-hostile-unlocked"  # made without Object Lock
BACKUP = "/home/core/backup"
IDENTITY = "/home/core/identity.txt"
SNAPSHOT_KEY = f"{TIMESTAMP}/snapshot_{TIMESTAMP}.db.age"
ARCHIVE_KEY = f"{TIMESTAMP}/static_kuberesources_{TIMESTAMP}.tar.gz.age"
MANIFEST_KEY = f"{TIMESTAMP}/backup_{TIMESTAMP}.json"


@pytest.fixture(scope="module")
def buckets(object_store: ObjectStore) -> ObjectStore:
    object_store.create_bucket(BUCKET)
    object_store.create_bucket(PLAIN_BUCKET)
    return object_store


@dataclass(frozen=True)
class Host:
    root: Path
    recipient: str
    prefix: str                # this test's own, under BUCKET
    store: ObjectStore

    @property
    def url(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}"

    def stored_keys(self, bucket: str = BUCKET) -> list[str]:
        listed = self.store.client().list_objects_v2(Bucket=bucket, Prefix=self.prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def cli(self, run_cli: Any, *args: str, exit_code: int = 0) -> Any:
        return run_cli(["--host-root", str(self.root), "--host-exec", "direct", *args],
                       exit_code=exit_code)


@pytest.fixture
def host(run_cli, tmp_path: Path, buckets: ObjectStore,  # type: ignore[no-untyped-def]
         monkeypatch: pytest.MonkeyPatch) -> Host:
    """A master's host root with a good backup set, an identity from `backup keygen`, and
    the store's AWS_* variables in the environment."""
    for name, value in buckets.env().items():
        monkeypatch.setenv(name, value)
    root = master_root(tmp_path / "host")
    backup_set(root / BACKUP.lstrip("/"))
    keygen = run_cli(["--host-root", str(root), "--host-exec", "direct", "backup", "keygen",
                      IDENTITY, "--json"])
    return Host(root, json.loads(keygen.stdout)["recipient"], uuid.uuid4().hex[:12], buckets)


# ---- a push refused, nothing sent -----------------------------------------------------------

@pytest.mark.parametrize(("change", "url", "exit_code", "said"), [
    pytest.param({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, None, 16,
                 "refused to use the bucket", id="wrong-credentials"),
    pytest.param({"AWS_ACCESS_KEY_ID": "NOSUCHACCESSKEY00000"}, None, 16,
                 "refused to use the bucket", id="unknown-access-key"),
    pytest.param({}, "s3://offsite-no-such-bucket/prod", 16, "does not exist",
                 id="missing-bucket"),
    pytest.param({"AWS_CA_BUNDLE": None}, None, 16, "is not trusted",
                 id="untrusted-certificate"),
    pytest.param({"AWS_ENDPOINT_URL": "https://127.0.0.8:9"}, None, 16, "did not answer",
                 id="unreachable-endpoint"),
    pytest.param({"AWS_ENDPOINT_URL": "127.0.0.8:8443"}, None, 3, "is not a URL",
                 id="endpoint-without-scheme"),
    pytest.param({}, f"s3://{PLAIN_BUCKET}/prod", 3, "does not have Object Lock enabled",
                 id="lock-days-without-object-lock"),
])
def test_a_push_refused_sends_nothing(run_cli, host: Host, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                      change: dict[str, str | None], url: str | None,
                                      exit_code: int, said: str) -> None:
    for name, value in change.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    lock = ["--lock-days", "1"] if "Object Lock" in said else []
    err = refused(run_cli, host.root, ["backup", "push", BACKUP, url or host.url,
                                       "--recipient", host.recipient, *lock], exit_code).stderr
    assert said in err and "next:" in err
    monkeypatch.undo()  # the store seen with the right variables
    assert host.stored_keys() == [] and host.stored_keys(PLAIN_BUCKET) == []
    assert "offsite-no-such-bucket" not in [
        b["Name"] for b in host.store.client().list_buckets()["Buckets"]]


@pytest.mark.parametrize("recipients", [
    pytest.param([], id="none"),
    pytest.param(["--recipients-file", "/home/core/comments-only.txt"], id="file-of-comments"),
])
@pytest.mark.parametrize("upload", [
    pytest.param(["backup", "push", BACKUP], id="push"),
    # Refused before the snapshot too: no local backup is taken that then cannot go up.
    pytest.param(["backup", "/home/core/new-backup", "--upload"], id="backup-upload"),
])
def test_no_recipient_is_refused_before_anything_is_sent(
        run_cli, host: Host, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        upload: list[str], recipients: list[str]) -> None:
    (host.root / "home/core/comments-only.txt").write_text("# age1… goes here\n\n")
    # An endpoint that answers nothing: the refusal comes before any connection.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://127.0.0.8:9")
    err = refused(run_cli, host.root, [*upload, host.url, *recipients], 3).stderr
    assert "no recipient to encrypt to" in err and "--recipient age1" in err
    monkeypatch.undo()
    assert host.stored_keys() == []


def test_a_recipient_that_is_no_public_key_is_refused(run_cli, host: Host) -> None:  # type: ignore[no-untyped-def]
    err = refused(run_cli, host.root, ["backup", "push", BACKUP, host.url, "--recipient",
                                       "ssh-dss AAAAB3NzaC1kc3MAAACBAP"], 3).stderr
    assert "is not a public key age accepts" in err
    assert host.stored_keys() == []


def test_a_private_key_given_as_a_recipient_is_refused_and_not_echoed(  # type: ignore[no-untyped-def]
        run_cli, host: Host) -> None:
    secret = "AGE-SECRET-KEY-1QQQQWWWWEEEERRRRTTTTYYYY"
    err = refused(run_cli, host.root, ["backup", "push", BACKUP, host.url, "--recipient",
                                       secret], 3).stderr
    assert "is a private key (an identity), not a public key" in err
    assert "QQQQ" not in err and "must not stay on this host" in err
    assert host.stored_keys() == []


# ---- a damaged stored set: fetch and restore refuse it, the host untouched ------------------

def rewrite(host: Host, key: str, change: Callable[[bytes], bytes]) -> None:
    client = host.store.client()
    full = f"{host.prefix}/{key}"
    data = client.get_object(Bucket=BUCKET, Key=full)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=full, Body=change(data))


def edit_manifest(change: Callable[[dict[str, Any]], object]) -> Callable[[Host], None]:
    def edit(manifest: bytes) -> bytes:
        data = json.loads(manifest)
        change(data)
        return json.dumps(data).encode()
    return lambda host: rewrite(host, MANIFEST_KEY, edit)


def snapshot_record(manifest: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = manifest["offsite"]["files"]["snapshot"]
    return record


OTHER_SHA256 = hashlib.sha256(b"another object").hexdigest()


DAMAGE: list[Any] = [
    pytest.param(lambda h: rewrite(h, SNAPSHOT_KEY, lambda d: flip(d, len(d) // 2)),
                 "failed to decrypt", id="flipped-byte-in-the-payload"),
    # Inside the recipient stanza: age then says "no matching keys", as for a wrong identity.
    pytest.param(lambda h: rewrite(h, SNAPSHOT_KEY, lambda d: flip(d, 30)),
                 "the manifest records", id="flipped-byte-in-the-recipient-stanza"),
    pytest.param(lambda h: rewrite(h, ARCHIVE_KEY, lambda d: flip(d, len(d) - 40)),
                 "failed to decrypt", id="flipped-byte-in-the-archive"),
    pytest.param(lambda h: rewrite(h, SNAPSHOT_KEY, lambda d: d[:-100]),
                 "failed to decrypt", id="truncated"),
    pytest.param(lambda h: rewrite(h, SNAPSHOT_KEY, lambda d: d[:40]),
                 "failed to decrypt", id="truncated-in-the-header"),
    pytest.param(lambda h: h.store.client().delete_object(Bucket=BUCKET,
                                                          Key=f"{h.prefix}/{SNAPSHOT_KEY}"),
                 "is missing from the store", id="object-deleted"),
    pytest.param(edit_manifest(lambda m: snapshot_record(m).update(sha256=OTHER_SHA256)),
                 "the manifest records", id="manifest-ciphertext-sha256"),
    pytest.param(edit_manifest(lambda m: snapshot_record(m).update(
        plaintext_sha256=OTHER_SHA256)),
                 "do not match the manifest's plaintext", id="manifest-plaintext-sha256"),
    pytest.param(edit_manifest(lambda m: snapshot_record(m).update(
        key=f"elsewhere/{TIMESTAMP}/snapshot_{TIMESTAMP}.db.age")),
                 "outside its own set", id="manifest-names-a-key-elsewhere"),
    pytest.param(lambda h: rewrite(h, MANIFEST_KEY, lambda d: d[: len(d) // 2]),
                 "is not one ocp-recovery wrote", id="manifest-cut"),
]
FETCH = ["backup", "fetch", "{url}", "/home/core/fetched"]
RESTORE = ["restore", "{url}", "--initial-cluster", f"etcd-member-m0=https://{ETCD_IP}:2380",
           "--yes"]
COMMANDS = [pytest.param(FETCH, id="fetch"), pytest.param(RESTORE, id="restore")]


@pytest.mark.parametrize("args", COMMANDS)
@pytest.mark.parametrize(("damage", "said"), DAMAGE)
def test_a_damaged_stored_set_is_refused_before_the_host_is_touched(
        run_cli, host: Host, damage: Callable[[Host], None], said: str,  # type: ignore[no-untyped-def]
        args: list[str]) -> None:
    host.cli(run_cli, "backup", "push", BACKUP, host.url, "--recipient", host.recipient)
    damage(host)
    command = [a.format(url=host.url) for a in args]
    err = refused(run_cli, host.root, [*command, "--identity", IDENTITY], 6).stderr
    assert said in err and f"{host.url}/{TIMESTAMP}" in err and "next:" in err


@pytest.mark.parametrize("args", COMMANDS)
def test_the_wrong_identity_writes_nothing(run_cli, host: Host, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    host.cli(run_cli, "backup", "push", BACKUP, host.url, "--recipient", host.recipient)
    host.cli(run_cli, "backup", "keygen", "/home/core/another-identity.txt")
    command = [a.format(url=host.url) for a in args]
    err = refused(run_cli, host.root, [*command, "--identity", "/home/core/another-identity.txt"],
                  3).stderr
    assert "cannot decrypt" in err and "not one of the recipients" in err


def test_a_manifest_naming_a_host_file_is_refused_and_the_file_kept(run_cli, host: Host) -> None:  # type: ignore[no-untyped-def]
    """Anyone who may write the bucket can encrypt to the recipient the manifest lists: a
    set made up there must not write outside the fetch directory."""
    host.cli(run_cli, "backup", "push", BACKUP, host.url, "--recipient", host.recipient)
    victim = "../../../etc/kubernetes/manifests/kube-apiserver-pod.yaml"
    key = f"{host.prefix}/{TIMESTAMP}/{victim}.age"
    client = host.store.client()
    client.put_object(Bucket=BUCKET, Key=key, Body=client.get_object(
        Bucket=BUCKET, Key=f"{host.prefix}/{SNAPSHOT_KEY}")["Body"].read())
    edit_manifest(lambda m: snapshot_record(m).update(name=victim, key=key))(host)
    for args in (FETCH, RESTORE):
        command = [a.format(url=host.url) for a in args]
        err = refused(run_cli, host.root, [*command, "--identity", IDENTITY], 6).stderr
        assert "outside its own set" in err


OLDER = "2020-04-16_170928"


def test_a_damaged_set_does_not_hide_the_others(run_cli, host: Host) -> None:  # type: ignore[no-untyped-def]
    backup_set(host.root / "home/core/older", timestamp=OLDER)
    host.cli(run_cli, "backup", "push", "/home/core/older", host.url, "--recipient",
             host.recipient)
    host.cli(run_cli, "backup", "push", BACKUP, host.url, "--recipient", host.recipient)
    # A newer toolbox's format, or a manifest cut short: this set cannot be read.
    rewrite(host, f"{OLDER}/backup_{OLDER}.json", lambda d: d[: len(d) // 2])
    listed = json.loads(host.cli(run_cli, "backup", "ls", host.url, "--json").stdout)
    assert [s["name"] for s in listed["sets"]] == [TIMESTAMP]
    assert [d["name"] for d in listed["damaged"]] == [OLDER]
    console = host.cli(run_cli, "backup", "ls", host.url).stdout
    assert f"1 damaged: {OLDER}" in console
    # The newest set is still there to restore from; the damaged one fails verification.
    host.cli(run_cli, "backup", "fetch", host.url, "/home/core/fetched", "--identity",
             IDENTITY)
    assert (host.root / f"home/core/fetched/snapshot_{TIMESTAMP}.db").is_file()
    err = host.cli(run_cli, "backup", "verify", host.url, exit_code=6).stderr
    assert f"{host.url}/{OLDER}" in err and "is not one ocp-recovery wrote" in err
    # Prune neither counts it toward --keep nor removes it (it may be evidence).
    pruned = json.loads(host.cli(run_cli, "backup", "prune", host.url, "--keep", "1",
                                 "--yes", "--json").stdout)
    assert pruned["removed"] == []
    assert f"{host.prefix}/{OLDER}/backup_{OLDER}.json" in host.stored_keys()


def test_the_newest_set_damaged_is_refused_not_an_older_one_taken(run_cli, host: Host) -> None:  # type: ignore[no-untyped-def]
    backup_set(host.root / "home/core/older", timestamp=OLDER)
    host.cli(run_cli, "backup", "push", "/home/core/older", host.url, "--recipient",
             host.recipient)
    host.cli(run_cli, "backup", "push", BACKUP, host.url, "--recipient", host.recipient)
    rewrite(host, MANIFEST_KEY, lambda d: d.replace(b'"format": 1', b'"format": 2'))
    # By default the newest: an older set, silently, would lose what the operator expects.
    err = refused(run_cli, host.root, ["backup", "fetch", host.url, "/home/core/fetched",
                                       "--identity", IDENTITY], 6).stderr
    assert f"{host.url}/{TIMESTAMP}" in err and "off-site format 2" in err
    # Named, the older one is there.
    host.cli(run_cli, "backup", "fetch", f"{host.url}/{OLDER}", "/home/core/fetched",
             "--identity", IDENTITY)
    assert (host.root / f"home/core/fetched/snapshot_{OLDER}.db").is_file()
