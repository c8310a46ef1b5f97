"""Guide 1.1 on a 3-master sandbox, for etcd 3.4 and 3.5: what the operator relies on."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.conftest import assert_host_unchanged
from toolbox.pki import certs
from toolbox.sandbox import scratch, workload
from toolbox.sandbox.cluster import Sandbox


def master_env(sandbox: Sandbox, index: int = 0) -> dict[str, str]:
    return sandbox.env_vars(index, dict(os.environ))


def backup(run_cli, sandbox: Sandbox, directory: str, *extra: str, exit_code: int = 0):  # type: ignore[no-untyped-def]
    return run_cli(["--log-format", "json", "backup", directory, *extra],
                   env=master_env(sandbox), exit_code=exit_code)


def summary(outcome) -> dict:  # type: ignore[no-untyped-def,type-arg]
    [line] = [d for d in outcome.json_lines() if d.get("event") == "backup.summary"]
    return line


def test_snapshot_holds_keys_written_before_and_not_after(run_cli, sandbox: Sandbox) -> None:
    with workload.kv_client(sandbox, 1) as kv:
        before = workload.write(kv, "bk-before", 300)
    result = summary(backup(run_cli, sandbox, "/home/core/backup-data"))
    with workload.kv_client(sandbox, 2) as kv:
        workload.write(kv, "bk-after", 50)
    snapshot = sandbox.root(0) / "var/home/core/backup-data" / Path(result["snapshot"]).name
    with scratch.restored_etcd(sandbox.binaries, snapshot) as restored:
        got = scratch.read_prefix(restored, "/kubernetes.io/configmaps/drill-bk-before/")
        assert set(got) == set(before)
        assert all(got[k] == workload.value_for(k, 1024) for k in before)
        assert scratch.read_prefix(restored, "/kubernetes.io/configmaps/drill-bk-after/") == {}
    assert result["keys"] >= 300 and result["revision"] > 0


def test_files_names_modes_and_manifest(run_cli, sandbox: Sandbox) -> None:
    result = summary(backup(run_cli, sandbox, "/home/core/backup-modes"))
    directory = sandbox.root(0) / "var/home/core/backup-modes"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    names = sorted(p.name for p in directory.iterdir())
    stamp = Path(result["snapshot"]).stem.removeprefix("snapshot_")
    assert dt.datetime.strptime(stamp, "%Y-%m-%d_%H%M%S")
    assert names == [f"backup_{stamp}.json", f"snapshot_{stamp}.db",
                     f"static_kuberesources_{stamp}.tar.gz"]
    for name in names:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    manifest = json.loads((directory / f"backup_{stamp}.json").read_text())
    snapshot = (directory / f"snapshot_{stamp}.db").read_bytes()
    import hashlib

    assert manifest["snapshot"]["db_sha256"] == hashlib.sha256(snapshot[:-32]).hexdigest()
    assert snapshot[-32:] == bytes.fromhex(manifest["snapshot"]["db_sha256"])
    assert manifest["static_resources"]["sha256"] == hashlib.sha256(
        (directory / f"static_kuberesources_{stamp}.tar.gz").read_bytes()).hexdigest()
    assert manifest["etcd"]["version"].startswith(sandbox.binaries.version)
    assert sorted(m["name"] for m in manifest["etcd"]["members"]) == [
        "etcd-member-master-0", "etcd-member-master-1", "etcd-member-master-2"]
    assert manifest["static_resources"]["kube_apiserver_revision"] == 10
    assert result["warnings"] == []


def test_archive_holds_the_highest_revision_with_its_keys(run_cli, sandbox: Sandbox) -> None:
    result = summary(backup(run_cli, sandbox, "/home/core/backup-archive"))
    archive = sandbox.root(0) / "var/home/core/backup-archive" / Path(
        result["static_resources"]).name
    source = sandbox.root(0) / "etc/kubernetes/static-pod-resources/kube-apiserver-pod-10"
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        enc = "static-pod-resources/kube-apiserver-pod-10/secrets/encryption-config/" \
              "encryption-config"
        assert enc in members
        assert tar.extractfile(enc).read() == (  # type: ignore[union-attr]
            source / "secrets/encryption-config/encryption-config").read_bytes()
        assert members[enc].mode == 0o600
        assert all(n.startswith("static-pod-resources/kube-apiserver-pod-10") for n in members)
        assert not any("kube-apiserver-pod-9" in n for n in members)


def test_keep_prunes_only_older_sets_and_keeps_the_floor(run_cli, sandbox: Sandbox) -> None:
    directory = sandbox.root(0) / "var/home/core/backup-keep"
    directory.mkdir(parents=True)
    # A 4.3-made pair (no manifest) older than ours: not verified, so it never counts
    # toward the floor, and it is pruned only once `keep` verified sets exist.
    (directory / "snapshot_2020-01-01_000000.db").write_bytes(b"old")
    (directory / "static_kuberesources_2020-01-01_000000.tar.gz").write_bytes(b"old")
    first = summary(backup(run_cli, sandbox, "/home/core/backup-keep", "--keep", "2"))
    assert first["pruned"] == []
    second = summary(backup(run_cli, sandbox, "/home/core/backup-keep", "--keep", "2"))
    assert sorted(Path(p).name for p in second["pruned"]) == [
        "snapshot_2020-01-01_000000.db", "static_kuberesources_2020-01-01_000000.tar.gz"]
    third_run = backup(run_cli, sandbox, "/home/core/backup-keep", "--keep", "2")
    third = summary(third_run)
    first_stamp = Path(first["snapshot"]).stem.removeprefix("snapshot_")
    assert sorted(Path(p).name for p in third["pruned"]) == sorted([
        f"snapshot_{first_stamp}.db", f"static_kuberesources_{first_stamp}.tar.gz",
        f"backup_{first_stamp}.json"])
    # The log of a CronJob's run names each file it deleted, as the operator's path.
    [pruned_log] = [json.loads(line) for line in third_run.stderr.splitlines()
                    if '"backup.pruned"' in line]
    assert sorted(pruned_log["files"]) == sorted(third["pruned"])
    assert all(p.startswith("/home/core/backup-keep/") for p in pruned_log["files"])
    assert len(list(directory.glob("snapshot_*.db"))) == 2


def test_legacy_script_name_makes_the_same_backup(sandbox: Sandbox) -> None:
    script = Path(sys.executable).with_name("etcd-snapshot-backup.sh")
    assert script.exists(), "pip install -e . puts the 4.3 script names on PATH"
    done = subprocess.run([str(script), "/home/core/assets/backup"], env=master_env(sandbox),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    directory = sandbox.root(0) / "var/home/core/assets/backup"
    assert len(list(directory.glob("snapshot_*.db"))) == 1
    assert len(list(directory.glob("static_kuberesources_*.tar.gz"))) == 1
    usage = subprocess.run([str(script)], env=master_env(sandbox), capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode == 2 and "usage: etcd-snapshot-backup.sh" in usage.stderr


def test_console_summary_says_what_to_do_next(run_cli, sandbox: Sandbox) -> None:
    out = run_cli(["--log-format", "console", "backup", "/home/core/backup-console"],
                  env=master_env(sandbox)).stdout
    assert out.startswith("backup ok in ")
    assert "kube-apiserver-pod-10" in out and "next: copy both files off this host" in out


def test_young_client_certificate_is_warned_about(run_cli, sandbox: Sandbox,
                                                   tmp_path: Path) -> None:
    pki = sandbox.pki
    young = certs.issue(pki.etcd_ca, common_name="etcd-client", server=False)
    tls = sandbox.root(0) / "tmp/young"
    tls.mkdir(parents=True)
    (tls / "ca.crt").write_bytes(pki.etcd_ca.cert_pem())
    (tls / "client.crt").write_bytes(young.cert_pem())
    (tls / "client.key").write_bytes(young.key_pem())
    result = summary(run_cli(
        ["--log-format", "json", "--cacert", "/tmp/young/ca.crt", "--cert",
         "/tmp/young/client.crt", "--key", "/tmp/young/client.key", "backup",
         "/home/core/backup-young"], env=master_env(sandbox)))
    assert any("first certificate rotation" in w for w in result["warnings"])


def test_a_certificate_expiring_soon_is_warned_about(run_cli, sandbox: Sandbox) -> None:
    """A restore of this backup after that date needs guide 3.4 too: say so now."""
    pki = sandbox.pki
    soon = certs.issue(pki.etcd_ca, common_name="soon", server=False, days=10)
    revision = sandbox.root(0) / "etc/kubernetes/static-pod-resources/kube-apiserver-pod-10"
    planted = revision / "secrets/expiring-soon/tls.crt"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(soon.cert_pem())
    try:
        result = summary(backup(run_cli, sandbox, "/home/core/backup-expiring"))
    finally:
        planted.unlink()
        planted.parent.rmdir()
    expiry = soon.cert.not_valid_after_utc.isoformat()
    assert any(f"expires on {expiry}" in w and "guide 3.4" in w for w in result["warnings"])
    manifest = json.loads(next((sandbox.root(0) / "var/home/core/backup-expiring")
                               .glob("backup_*.json")).read_text())
    assert manifest["static_resources"]["earliest_cert_expiry"] == expiry


# ---- refused runs: clear error, documented exit code, host unchanged ----------------------

def refused(run_cli, sandbox: Sandbox, args: list[str], exit_code: int,  # type: ignore[no-untyped-def]
            env: dict[str, str] | None = None) -> str:
    with assert_host_unchanged(sandbox.root(0), ("var/lib/etcd",)):
        outcome = run_cli(["--log-format", "json", *args], env=env or master_env(sandbox),
                          exit_code=exit_code)
    assert "error: " in outcome.stderr and "state: unchanged" in outcome.stderr
    return outcome.stderr


def test_directory_that_is_a_file(run_cli, sandbox: Sandbox) -> None:
    (sandbox.root(0) / "var/home/core/not-a-dir").write_text("x")
    err = refused(run_cli, sandbox, ["backup", "/home/core/not-a-dir"], 3)
    assert "is not a directory" in err
    assert "next:  ocp-recovery backup /home/core/backup (a directory" in err  # a command


def test_keep_zero_is_refused_with_the_command_to_type(run_cli, sandbox: Sandbox) -> None:
    err = refused(run_cli, sandbox, ["backup", "/home/core/backup-zero", "--keep", "0"], 3)
    assert "--keep must be at least 1" in err
    assert "next:  ocp-recovery backup /home/core/backup-zero --keep 7" in err


def test_unreachable_etcd(run_cli, sandbox: Sandbox) -> None:
    err = refused(run_cli, sandbox, ["--endpoints", "https://127.0.0.11:2999", "backup",
                                     "/home/core/backup-unreachable"], 5)
    assert "127.0.0.11:2999" in err and "next:" in err


def test_client_certificate_from_another_ca_is_rejected(run_cli, sandbox: Sandbox) -> None:
    stranger_ca = certs.self_signed_ca("stranger")
    stranger = certs.issue(stranger_ca, common_name="etcd-client", server=False)
    tls = sandbox.root(0) / "tmp/stranger"
    tls.mkdir(parents=True)
    (tls / "ca.crt").write_bytes(sandbox.pki.etcd_ca.cert_pem())
    (tls / "client.crt").write_bytes(stranger.cert_pem())
    (tls / "client.key").write_bytes(stranger.key_pem())
    refused(run_cli, sandbox, ["--cacert", "/tmp/stranger/ca.crt", "--cert",
                               "/tmp/stranger/client.crt", "--key", "/tmp/stranger/client.key",
                               "backup", "/home/core/backup-stranger"], 5)


def test_no_kube_apiserver_revision(run_cli, sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "etc/kubernetes/static-pod-resources").mkdir(parents=True)
    env = {**master_env(sandbox), "OCP_RECOVERY_HOST_ROOT": str(tmp_path)}
    with assert_host_unchanged(tmp_path):
        outcome = run_cli(["backup", "/backup"], env=env, exit_code=4)
    assert "no kube-apiserver-pod-N" in outcome.stderr


def test_read_only_target(run_cli, sandbox: Sandbox, mount_tmpfs) -> None:  # type: ignore[no-untyped-def]
    mount_tmpfs(sandbox.root(0) / "mnt/ro", read_only=True)
    err = refused(run_cli, sandbox, ["backup", "/mnt/ro/backup"], 3)
    assert "not writable" in err


def test_too_little_space_is_refused_before_writing(run_cli, sandbox: Sandbox,  # type: ignore[no-untyped-def]
                                                    mount_tmpfs) -> None:
    mount_tmpfs(sandbox.root(0) / "mnt/small", size="1m")
    err = refused(run_cli, sandbox, ["backup", "/mnt/small/backup"], 7)
    assert "free" in err
    assert list((sandbox.root(0) / "mnt/small").iterdir()) == []


def test_a_backup_that_leaves_too_little_room_for_the_next_says_so(  # type: ignore[no-untyped-def]
        run_cli, sandbox: Sandbox, mount_tmpfs) -> None:
    from toolbox.host.files import tree_bytes
    from toolbox.procedures.backup import _space_needed

    with workload.kv_client(sandbox, 0) as kv:
        db_bytes = kv.status().db_size
    revision_dir = max((sandbox.root(0) / "etc/kubernetes/static-pod-resources").glob(
        "kube-apiserver-pod-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    # Room for this backup with half a snapshot to spare: not for a second one.
    room = _space_needed(db_bytes + tree_bytes(revision_dir)) + db_bytes // 2
    mount_tmpfs(sandbox.root(0) / "mnt/tight", size=f"{(room + 4095) // 4096 * 4}k")
    result = summary(backup(run_cli, sandbox, "/mnt/tight/backup", "--keep", "1"))
    [warning] = [w for w in result["warnings"] if "the next backup needs" in w]
    assert warning.startswith("/mnt/tight/backup has ") and "it will be refused" in warning
    assert "--keep 1 prunes only after the next set is written, so 2 sets must fit" in warning
    # One set there: keeping fewer would free nothing, so it is not advised.
    assert "the 1 set(s) there take" in warning and "--keep)" not in warning, warning
    err = refused(run_cli, sandbox, ["backup", "/mnt/tight/backup", "--keep", "1"], 7)
    assert "error: /mnt/tight/backup has " in err, err  # the host path, as the operator typed it
    assert "less than needed for the snapshot and archive (" in err and "of margin" in err


def test_a_cluster_wide_proxy_does_not_capture_etcd_traffic(run_cli, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    dead = "http://127.0.0.1:9"  # nothing listens: a proxied connection would fail
    env = {**master_env(sandbox), "HTTPS_PROXY": dead, "https_proxy": dead,
           "HTTP_PROXY": dead, "http_proxy": dead, "grpc_proxy": dead, "NO_PROXY": ""}
    summary(run_cli(["--log-format", "json", "backup", "/home/core/backup-proxy"], env=env))


# ---- one count, one spelling (issue 13, item 9) ---------------------------------------------

def etcd_key_count(sandbox: Sandbox, revision: int = 0) -> int:
    """Keys etcd itself counts (at `revision`; 0: now)."""
    with workload.kv_client(sandbox, 0) as kv:
        return int(kv.get_response(b"\0", range_end=b"\0", count_only=True,
                                   revision=revision or None).count)


def test_backup_and_verify_count_the_same_live_keys(run_cli, sandbox: Sandbox) -> None:
    """Revisions and deletions must not count: every key written twice, five deleted, and
    history compacted between the deletions (two tombstones go, three stay)."""
    held = etcd_key_count(sandbox)
    with workload.kv_client(sandbox, 0) as kv:
        written = workload.write(kv, "bk-count", 40)
        workload.write(kv, "bk-count", 40)
        deleted = [kv.delete(key, return_response=True) for key in written[:5]]
        kv.compact(deleted[1].header.revision, physical=True)
    result = summary(backup(run_cli, sandbox, "/home/core/backup-count"))
    assert result["keys"] == held + 40 - 5 == etcd_key_count(sandbox, result["revision"])
    verified = run_cli(["--log-format", "json", "snapshot", "verify", result["snapshot"]],
                       env=master_env(sandbox))
    [report] = [d for d in verified.json_lines() if d.get("event") == "verify.result"]
    assert (report["keys"], report["revision"]) == (result["keys"], result["revision"])
    directory = sandbox.root(0) / "var/home/core/backup-count"
    [manifest] = directory.glob("backup_*.json")
    assert json.loads(manifest.read_text())["etcd"]["keys"] == result["keys"]


def test_logs_and_summary_name_the_backup_as_given(run_cli, sandbox: Sandbox) -> None:
    """On RHCOS /home is a symlink to var/home (the sandbox too): the operator typed
    /home/core/…, so every line says /home/core/…, never /var/home/core/…."""
    backup(run_cli, sandbox, "/home/core/backup-named")
    outcome = backup(run_cli, sandbox, "/home/core/backup-named/", "--keep", "1")
    result = summary(outcome)
    logs = {d["event"]: d for d in (json.loads(line) for line in outcome.stderr.splitlines()
                                    if line.startswith("{"))}
    assert result["snapshot"].startswith("/home/core/backup-named/snapshot_")
    assert logs["snapshot.saved"]["path"] == logs["backup.done"]["snapshot"] == \
        result["snapshot"]
    assert logs["backup.archive.saved"]["path"] == result["static_resources"]
    assert len(result["pruned"]) == 3
    assert all(p.startswith("/home/core/backup-named/") for p in result["pruned"])
    assert "/var/home" not in outcome.stdout + outcome.stderr
