"""Drills: rehearse a procedure of the guide end to end on a sandbox, timed."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from cryptography import x509

from toolbox.context import Context, Timeouts
from toolbox.errors import RecoveryError
from toolbox.journal import plan_and_execute
from toolbox.pki.certs import load_certificates
from toolbox.pki.profiles import member_cert_requests
from toolbox.procedures import (
    backup,
    member_recover,
    member_remove,
    offsite_upload,
    restore,
    signer,
    verify,
)
from toolbox.report import Report
from toolbox.sandbox import cert_recovery, object_restore, scratch, workload
from toolbox.sandbox.binaries import require_kube_apiserver, require_kube_controller_manager
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drill_report import DrillReport, check, master_context
from toolbox.sandbox.layout import DOMAIN, SANDBOX_PEER_IPS


def backup_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 2000,
                 directory: Path | None = None, keep: bool = False) -> DrillReport:
    """Guide 1.1 on master-0 of a 3-master sandbox, then prove the snapshot: keys written
    before the backup come back from it, keys written after do not."""
    report = DrillReport("backup", etcd)
    with _drill_sandbox(report, directory, keep) as sandbox:
        _run_backup_drill(sandbox, environ, report, keys)
    return report


@contextmanager
def _drill_sandbox(report: DrillReport, directory: Path | None, keep: bool, *,
                   masters: int = 3, api: bool = False, object_store: bool = False,
                   kubernetes_image: str | None = None, fill_mib: int = 0
                   ) -> Iterator[Sandbox]:
    """A sandbox for one drill, torn down afterwards; after a failure powered off but kept
    (logs, host roots), and the error says where. `api`: with a real kube-apiserver.
    `fill_mib`: the db will be grown to that size, so etcd's quota is raised to fit."""
    binary = require_kube_apiserver() if api else None
    made = directory is None
    where = directory or Path(tempfile.mkdtemp(prefix="ocpr-drill-", dir="/var/tmp"))
    label = f"sandbox up ({masters} master{'s' if masters > 1 else ''}" + \
        (", kube-apiserver" if api else "") + (", object store" if object_store else "") + \
        (", Kubernetes node" if kubernetes_image else "") + ")"
    try:
        with report.phase(label):
            sandbox = Sandbox.up(where / "sandbox", masters=masters, etcd=report.etcd,
                                 kube_apiserver=binary, object_store=object_store,
                                 kubernetes_image=kubernetes_image,
                                 etcd_conf=workload.conf_for(fill_mib))
    except BaseException:
        if made and not any(where.iterdir()):  # refused (an unknown --etcd): nothing to keep
            where.rmdir()
        raise
    try:
        yield sandbox
    except RecoveryError as exc:
        sandbox.power_off()
        exc.state = f"drill sandbox powered off, files kept in {sandbox.dir}"
        exc.next_step = f"{exc.next_step}; afterwards ocp-recovery sandbox down --dir " \
            f"{sandbox.dir}"
        raise
    except BaseException:
        sandbox.power_off()
        raise
    if not keep:
        sandbox.down()
        if made:  # the directory this drill made for its sandbox, now empty
            shutil.rmtree(where, ignore_errors=True)


def _run_backup_drill(sandbox: Sandbox, environ: Mapping[str, str], report: DrillReport,
                      count: int) -> None:
    with workload.kv_client(sandbox, 0) as kv, report.phase(f"write {count} keys (before)"):
        before = workload.write(kv, "before", count)
    ctx = master_context(sandbox, 0, environ)
    with report.phase("backup on master-0"):
        result = backup.run(ctx, backup.BackupRequest("/home/core/backup", progress=False))
    with workload.kv_client(sandbox, 1) as kv, report.phase("write 100 keys (after)"):
        after = workload.write(kv, "after", 100)
    with report.phase("snapshot verify"):
        verify.run(ctx, "/home/core/backup")
    with report.phase("restore to scratch + read back"), \
            scratch.restored_etcd(sandbox.binaries, result.snapshot.path) as restored:
        got_before = scratch.read_prefix(restored, "/kubernetes.io/configmaps/drill-before/")
        got_after = scratch.read_prefix(restored, "/kubernetes.io/configmaps/drill-after/")
    check(set(got_before) == set(before), f"{len(got_before)} of {len(before)} keys "
           "written before the backup are in the snapshot")
    check(all(got_before[k] == workload.value_for(k, 1024) for k in before),
           "values in the snapshot differ from those written")
    check(not got_after, f"{len(got_after)} keys written after the backup are in it")
    report.facts += [
        f"{len(before)} keys written before the backup read back from the restored snapshot",
        f"0 of {len(after)} keys written after the backup are in it",
        f"snapshot {result.snapshot.size} bytes, trailer sha256 verified while streaming",
        f"archive holds kube-apiserver-pod-"
        f"{result.manifest['static_resources']['kube_apiserver_revision']}",
    ]


def _restore_request(sandbox: Sandbox, masters: list[int]) -> restore.RestoreRequest:
    cluster = ",".join(f"{sandbox.spec(i).member_name}={sandbox.spec(i).peer_url}"
                       for i in masters)
    # Several masters: guide 3.3, which rewinds a cluster that may still be healthy.
    return restore.RestoreRequest("/home/core/backup", cluster,
                                  rewind_healthy_cluster=len(masters) > 1)


def _assert_restored_data(sandbox: Sandbox, index: int, before: list[str], after: list[str],
                          report: DrillReport) -> None:
    got_before = workload.read_group(sandbox, index, "before")
    got_after = workload.read_group(sandbox, index, "after")
    check(got_before == set(before), f"{len(got_before)} of {len(before)} keys written "
           "before the backup are in the restored cluster")
    check(not got_after, f"{len(got_after)} keys written after the backup survived")
    report.facts.append(f"{len(before)} keys written before the backup are back, 0 of "
                        f"{len(after)} written after it")


def _backup_between_writes(sandbox: Sandbox, environ: Mapping[str, str], report: DrillReport,
                           keys: int, fill_mib: int = 0,
                           upload: offsite_upload.UploadRequest | None = None
                           ) -> tuple[Context, list[str], list[str], backup.BackupResult]:
    """Keys "before", a backup on master-0 (`upload`: also encrypted and uploaded), keys
    "after": what a restore must tell apart. `fill_mib`: first grow the db to that size (for
    the drill times at scale)."""
    if fill_mib:
        with report.phase(f"fill the db to {fill_mib} MiB"):
            db_size, _ = workload.fill(sandbox, fill_mib)
        report.facts.append(f"db {db_size / 2**20:.0f} MiB before the backup")
    with workload.kv_client(sandbox, 0) as kv, report.phase(f"write {keys} keys"):
        before = workload.write(kv, "before", keys)
    ctx = master_context(sandbox, 0, environ)
    with report.phase("backup on master-0" + (", encrypted and uploaded" if upload else "")):
        made = backup.run(ctx, backup.BackupRequest("/home/core/backup", progress=False,
                                                    upload=upload))
    with workload.kv_client(sandbox, 0) as kv:
        after = workload.write(kv, "after", 100)
    return ctx, before, after, made


def quorum_restore_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 1000,
                         directory: Path | None = None, keep: bool = False,
                         fill_mib: int = 0) -> DrillReport:
    """Guide 3.2 step 1: two of three masters lost; restore the survivor alone."""
    report = DrillReport("quorum-restore", etcd)
    with _drill_sandbox(report, directory, keep, fill_mib=fill_mib) as sandbox:
        ctx, before, after, _ = _backup_between_writes(sandbox, environ, report, keys,
                                                       fill_mib)
        with report.phase("lose master-1 and master-2"):
            sandbox.stop_master(1)
            sandbox.stop_master(2)
        with report.phase("restore master-0 alone (to healthy)"):
            result = plan_and_execute(ctx, restore.PROCEDURE, _restore_request(sandbox, [0]))
        check(result.healthy is True and [m.name for m in result.members] == [
            sandbox.spec(0).member_name], f"member list after restore: {result.members}")
        report.facts.append(f"one healthy member {sandbox.spec(0).member_name}")
        told = result.report().next
        check(told == ["recreate the lost masters, then add each back (guide 3.2 steps 2-5)"],
              f"the restore's next steps: {told}")
        report.facts.append(f"the restore says what comes next: {told[0]}")
        _assert_restored_data(sandbox, 0, before, after, report)
    return report


def restore_previous_state_drill(environ: Mapping[str, str], *, etcd: str = "3.5",
                                 keys: int = 1000, directory: Path | None = None,
                                 keep: bool = False) -> DrillReport:
    """Guide 3.3: the same backup restored on every master, close together."""
    report = DrillReport("restore-previous-state", etcd)
    with _drill_sandbox(report, directory, keep) as sandbox:
        with workload.kv_client(sandbox, 0) as kv, report.phase(f"write {keys} keys"):
            before = workload.write(kv, "before", keys)
        contexts = [master_context(sandbox, i, environ) for i in range(3)]
        with report.phase("backup on master-0, copy to all"):
            backup.run(contexts[0], backup.BackupRequest("/home/core/backup", progress=False))
            source = contexts[0].paths.host("/home/core/backup")
            for ctx in contexts[1:]:
                shutil.copytree(source, ctx.paths.host("/home/core/backup"))
        with workload.kv_client(sandbox, 1) as kv:
            after = workload.write(kv, "after", 100)
        request = _restore_request(sandbox, [0, 1, 2])
        with report.phase("restore all three (to healthy)"), \
                ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(
                lambda c: plan_and_execute(c, restore.PROCEDURE, request), contexts))
        cluster_ids = set()
        for i in range(3):
            with sandbox.client(i) as client:
                cluster_ids.add(client.status().cluster_id)
                members = client.members()
        check(len(cluster_ids) == 1, f"masters report cluster IDs {cluster_ids}")
        check(sorted(m.name for m in members) == [sandbox.spec(i).member_name
                                                    for i in range(3)],
               f"member list after restore: {members}")
        check(all(r.healthy for r in results), "a restored member is not healthy")
        report.facts.append(f"3 started members, one cluster ID {cluster_ids.pop():x}")
        _assert_restored_data(sandbox, 2, before, after, report)
    return report


def start_signer(sandbox: Sandbox, survivor: int, expect: list[str],
                environ: Mapping[str, str]) -> tuple[threading.Thread, str, list[Exception]]:
    """Run the signer on `survivor` in a thread, with the CA pairs an operator would dump
    from the secrets etcd-signer and etcd-metric-signer into files on that master. It
    serves until every expected master is recovered in turn, each one after the previous
    received the whole db: its deadline grows with the db."""
    secrets_dir = sandbox.root(survivor) / "root/signer"
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in ("etcd_ca", "metric_ca"):
        for ext in ("crt", "key"):
            shutil.copy(sandbox.dir / "pki" / f"{name}.{ext}", secrets_dir / f"{name}.{ext}")
    ctx = master_context(sandbox, survivor, environ)
    request = signer.SignerRequest(expect, ("/root/signer/etcd_ca.crt", "/root/signer/etcd_ca.key"),
                                   ("/root/signer/metric_ca.crt", "/root/signer/metric_ca.key"),
                                   deadline=Timeouts().scaled(300, len(expect) *
                                                              _db_bytes(sandbox, survivor)))
    the_signer, address, cert, key = signer.prepare(ctx, request)
    ready = threading.Event()
    failures: list[Exception] = []

    def serve() -> None:
        try:
            signer.serve(the_signer, address, cert, key, request.deadline, ready)
        except Exception as exc:  # reported by the drill, not lost in the thread
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(30)
    return thread, the_signer.token, failures


def _recover(sandbox: Sandbox, index: int, signer_ip: str, token: str,
             environ: Mapping[str, str]) -> Report:
    """Guide 3.2 steps 3-4 on master `index`; the report its operator would read."""
    ctx = master_context(sandbox, index, {**environ, "OCP_RECOVERY_SIGNER_TOKEN": token})
    request = member_recover.RecoverRequest(signer_ip, sandbox.spec(index).member_name)
    return plan_and_execute(ctx, member_recover.PROCEDURE, request).report()


def _check_new_certificates(sandbox: Sandbox, index: int, report: DrillReport) -> None:
    spec = sandbox.spec(index)
    member_dir = sandbox.root(index) / "etc/kubernetes/static-pod-resources/etcd-member"
    pki = sandbox.pki
    for request in member_cert_requests(spec.dns_name, spec.ip, DOMAIN, SANDBOX_PEER_IPS):
        [cert] = load_certificates((member_dir / f"{request.file_stem}.crt").read_bytes())
        ca = pki.metric_ca if request.signer == "metric" else pki.etcd_ca
        cert.verify_directly_issued_by(ca.cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        check(set(sans.get_values_for_type(x509.DNSName)) == set(request.dns_names),
               f"{request.kind} certificate DNS SANs differ from the 4.3 profile")
        check({str(i) for i in sans.get_values_for_type(x509.IPAddress)} ==
               set(request.ip_addresses), f"{request.kind} certificate IP SANs differ")
        key = member_dir / f"{request.file_stem}.key"
        check(key.stat().st_mode & 0o777 == 0o600, f"{key.name} is not 0600")
    report.facts.append(f"{spec.node_name}'s server, peer and metric certificates chain to "
                        "their CAs with the 4.3 profile's SANs; keys 0600")


def _check_members(sandbox: Sandbox, index: int, expected: list[int]) -> None:
    with sandbox.client(index) as client:
        members = client.members()
    check(sorted(m.name for m in members) == sorted(sandbox.spec(i).member_name
                                                      for i in expected),
           f"member list: {[m.name for m in members]}")
    sandbox.wait_healthy(expected, 60)


def replace_master_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 1000,
                         directory: Path | None = None, keep: bool = False) -> DrillReport:
    """Guide chapter 2: a master is lost; remove its member, add a blank master and recover
    it through the signer."""
    report = DrillReport("replace-master", etcd)
    with _drill_sandbox(report, directory, keep) as sandbox:
        with workload.kv_client(sandbox, 0) as kv, report.phase(f"write {keys} keys"):
            written = workload.write(kv, "before", keys)
        ctx = master_context(sandbox, 0, environ)
        with report.phase("lose master-2, remove its member"):
            sandbox.stop_master(2)
            member_remove.run(ctx, sandbox.spec(2).member_name)
            sandbox.wipe_master(2)
        with report.phase("add a blank master"):
            new = sandbox.add_master()
        with report.phase(f"signer on master-0, recover master-{new} (to healthy)"):
            thread, token, failures = start_signer(sandbox, 0, [sandbox.spec(new).dns_name],
                                                  environ)
            said = _recover(sandbox, new, sandbox.spec(0).ip, token, environ)
            thread.join(30)
        check(not failures and not thread.is_alive(), f"signer: {failures or 'still up'}")
        _check_members(sandbox, 0, [0, 1, new])
        report.facts.append(f"3 started healthy members: master-0, master-1, master-{new}")
        check(not said.next and not said.warnings,
              f"master-{new}'s report: next {said.next}, warnings {said.warnings}")
        report.facts.append(f"master-{new}'s report: {said.summary}; no warning, no next step")
        check(workload.read_group(sandbox, new, "before") == set(written),
               "data lost on the new member")
        report.facts.append(f"{len(written)} keys read back from master-{new}")
        _check_new_certificates(sandbox, new, report)
    return report


def quorum_loss_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 1000,
                      directory: Path | None = None, keep: bool = False,
                      fill_mib: int = 0) -> DrillReport:
    """Guide 3.2 whole: back up, lose two of three masters, restore the survivor, add two
    blank masters and recover them one at a time through the signer; an old member that
    comes back must not join."""
    report = DrillReport("quorum-loss", etcd)
    with _drill_sandbox(report, directory, keep, fill_mib=fill_mib) as sandbox:
        ctx, before, after, _ = _backup_between_writes(sandbox, environ, report, keys,
                                                       fill_mib)
        with report.phase("lose master-1 and master-2"):
            sandbox.stop_master(1)
            sandbox.wipe_master(1)
            sandbox.stop_master(2)  # powered off, disk kept: it comes back at the end
        with report.phase("restore master-0 alone (to healthy)"):
            plan_and_execute(ctx, restore.PROCEDURE, _restore_request(sandbox, [0]))
        new = _add_and_recover_two(sandbox, environ, report)
        _assert_restored_data(sandbox, new[1], before, after, report)
        with report.phase("old master-2 powers on"):
            sandbox.start_master(2)
            # etcd opens its old db before its peers' refusals can be logged.
            mismatch = _wait_for_log(sandbox, [0, 2], "cluster ID mismatch",
                                     Timeouts().scaled(30, _db_bytes(sandbox, 2)))
        check(mismatch, "the old member's cluster ID mismatch was not reported")
        _check_members(sandbox, 0, [0, *new])
        report.facts.append("the old master-2 was refused: cluster ID mismatch in the etcd "
                            "log; the member list is unchanged")
    return report


def _add_and_recover_two(sandbox: Sandbox, environ: Mapping[str, str],
                         report: DrillReport) -> list[int]:
    """Guide 3.2 after master-0's restore: two blank masters added and recovered in turn
    through the signer on master-0; the member list and each report's next step checked."""
    with report.phase("add two blank masters"):
        new = [sandbox.add_master(), sandbox.add_master()]
    with report.phase("signer on master-0, recover both in turn (to healthy)"):
        thread, token, failures = start_signer(
            sandbox, 0, [sandbox.spec(i).dns_name for i in new], environ)
        said = [_recover(sandbox, index, sandbox.spec(0).ip, token, environ)
                for index in new]
        thread.join(30)
    check(not failures and not thread.is_alive(), f"signer: {failures or 'still up'}")
    _check_members(sandbox, 0, [0, *new])
    report.facts.append(f"3 started healthy members: master-0, master-{new[0]}, "
                        f"master-{new[1]}")
    check(len(said[0].next) == 1 and said[0].next[0].startswith("1 more master(s) to add")
          and not said[1].next,
          f"next steps: master-{new[0]} {said[0].next}, master-{new[1]} {said[1].next}")
    report.facts.append(f"master-{new[0]}'s report names 1 more master to add; "
                        f"master-{new[1]}'s: {said[1].summary}")
    return new


def offsite_restore_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 1000,
                          directory: Path | None = None, keep: bool = False,
                          fill_mib: int = 0) -> DrillReport:
    """Guide 3.2 when the disaster took the backups too: a backup encrypted and uploaded to
    the sandbox's object store, more writes, two masters lost and the survivor's backup
    directory gone; master-0 restored from the store alone, two blank masters recovered."""
    from toolbox.procedures import offsite_fetch
    from toolbox.store.encryption import new_identity

    report = DrillReport("offsite-restore", etcd)
    with _drill_sandbox(report, directory, keep, object_store=True,
                        fill_mib=fill_mib) as sandbox:
        store = sandbox.object_store
        assert store is not None
        url = "s3://backups/drill"
        # The identity lives off the cluster: in the drill's directory, not on a master.
        identity_text, recipient = new_identity()
        identity = sandbox.dir / "operator-identity.txt"
        identity.write_text(identity_text)
        identity.chmod(0o600)
        with _object_store_credentials(store.env()):
            ctx, before, after, made = _backup_between_writes(
                sandbox, environ, report, keys, fill_mib, offsite_upload.UploadRequest(
                    "/home/core/backup", url, (recipient,), progress=False))
            assert made.uploaded is not None
            with report.phase("lose master-1, master-2 and master-0's backups"):
                sandbox.stop_master(1)
                sandbox.wipe_master(1)
                sandbox.stop_master(2)
                shutil.rmtree(sandbox.root(0) / "var/home/core/backup")
            # The operator brings the identity to the survivor for the restore.
            brought = sandbox.root(0) / "root/backup-identity.txt"
            brought.parent.mkdir(exist_ok=True)
            shutil.copy2(identity, brought)
            with report.phase("fetch from the store: download, decrypt, verify"):
                fetched = offsite_fetch.run(ctx, offsite_fetch.FetchRequest(
                    url, offsite_fetch.fetched_dir(ctx), "/root/backup-identity.txt",
                    progress=False, for_restore=True))
        check(fetched.stored.name == made.uploaded.url.set_name,
              f"fetched {fetched.stored.name}, uploaded {made.uploaded.url}")
        report.facts.append(f"{made.uploaded.url}: the snapshot and archive encrypted to one "
                            "age recipient, read back and verified; fetched with its identity")
        with report.phase("restore master-0 alone from the fetched set (to healthy)"):
            request = _restore_request(sandbox, [0])
            plan_and_execute(ctx, restore.PROCEDURE, replace(request,
                                                             backup=fetched.directory))
        new = _add_and_recover_two(sandbox, environ, report)
        _assert_restored_data(sandbox, new[1], before, after, report)
    return report


@contextmanager
def _object_store_credentials(variables: Mapping[str, str]) -> Iterator[None]:
    """The store's AWS_* variables for this process while the drill talks to it: the
    toolbox reads them as the AWS SDK does, from the environment."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _db_bytes(sandbox: Sandbox, index: int) -> int:
    db = sandbox.root(index) / "var/lib/etcd/member/snap/db"
    return db.stat().st_size if db.exists() else 0


def _wait_for_log(sandbox: Sandbox, masters: list[int], text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for index in masters:
            for log_file in (sandbox.master_dir(index) / "logs").glob("etcd-member-*.log"):
                if text in log_file.read_text(errors="replace"):
                    return True
        time.sleep(0.5)
    return False


def expired_certs_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 0,
                        directory: Path | None = None, keep: bool = False) -> DrillReport:
    """Guide 3.4 whole on a 1-master sandbox with a real kube-apiserver: its control-plane
    certificates are made long expired, then recovery API server, regenerate, force
    redeploy, kubelet kubeconfig, kubelet reset, CSR approval and destroy."""
    report = DrillReport("expired-certs", etcd)
    with _drill_sandbox(report, directory, keep, masters=1, api=True) as sandbox:
        cert_recovery.run(sandbox, master_context(sandbox, 0, environ), report)
    return report


def object_restore_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 200,
                         directory: Path | None = None, keep: bool = False) -> DrillReport:
    """A deleted namespace back from a backup with `objects restore`, on a 1-master sandbox
    with a real kube-apiserver and kube-controller-manager; `keys`: its ConfigMaps."""
    report = DrillReport("object-restore", etcd)
    require_kube_controller_manager()  # its namespace controller deletes the namespace
    with _drill_sandbox(report, directory, keep, masters=1, api=True) as sandbox:
        object_restore.run(sandbox, master_context(sandbox, 0, environ), report, keys)
    return report


def scheduled_backup_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 0,
                           directory: Path | None = None, keep: bool = False,
                           image: str = "localhost/ocp-recovery:latest") -> DrillReport:
    """The backup CronJob run by real Kubernetes on a 3-master sandbox whose master-0 is a
    node (`--kubernetes`), backing up off-site to its object store and to a PVC; `image`:
    the toolbox image the pods run."""
    from toolbox.sandbox import scheduled_backup

    del keys  # the sandbox's own objects are what is backed up
    report = DrillReport("scheduled-backup", etcd)
    with _drill_sandbox(report, directory, keep, api=True, object_store=True,
                        kubernetes_image=image) as sandbox, \
            _object_store_credentials(sandbox.object_store.env()
                                      if sandbox.object_store else {}):
        scheduled_backup.run(sandbox, master_context(sandbox, 0, environ), report)
    return report


DRILLS: dict[str, Callable[..., DrillReport]] = {
    "expired-certs": expired_certs_drill,
    "replace-master": replace_master_drill,
    "quorum-loss": quorum_loss_drill,
    "backup": backup_drill,
    "quorum-restore": quorum_restore_drill,
    "restore-previous-state": restore_previous_state_drill,
    "offsite-restore": offsite_restore_drill,
    "object-restore": object_restore_drill,
    "scheduled-backup": scheduled_backup_drill,
}
