"""`snapshot ls` against `etcdutl snapshot status`, and `objects restore` of a namespace.

    python -m benchmarks.objects ls [--size-mib 1024] [--rounds 5] [--etcd 3.5] [--keys 0]
    python -m benchmarks.objects restore [--objects 1000] [--rounds 3] [--etcd 3.5]

ls: a 1-master sandbox filled to the size, one backup; round by round `ocp-recovery
snapshot ls SNAPSHOT` (stdout to /dev/null, as a user piping to a file), the same with
filters that match nothing, `--namespace x` (which then reads the snapshot a second time to
say which namespaces it does hold) and `--prefix /x/` (the pure scan), and `etcdutl
snapshot status SNAPSHOT` (etcdctl for 3.4); both sides read the whole key bucket. The
fill's values are 96 KiB, so a 1 GiB db holds few keys (3,640); `--keys N` adds N keys of
1 KiB (ConfigMap-sized), as a cluster's many small objects, where the per-key cost shows.
Target (issue 16): ls <= 1.5 x status, toolbox peak RSS < 100 MiB and flat in the size.

restore: a 1-master sandbox with the real kube-apiserver; a namespace of N ConfigMaps and
Secrets (half each; the Secrets encrypted at rest) made with one `kubectl create` of a List,
one backup; then, round by round, `kubectl delete cm,secret --all -n NS`, `objects restore
BACKUP --namespace NS --dry-run` (the plan alone), `objects restore … --yes`, a check that
the API server serves all N again; then the anchor: the same deletion, and the same N values
written by one python-etcd3 process, one create-only transaction each (what the restore's
write step does, without its checks and journal). etcdctl gives no fair anchor: it has no
batch put, `etcdctl txn` is one transaction of at most --max-txn-ops (128) operations, and
a shell loop of `etcdctl put` times N process starts. Target (issue 16): N=1000 restored in
under 10 s.

Sandbox addresses are fixed (127.0.0.11 …): on a machine others share, run it in a private
network namespace: `unshare --net bash -c 'ip link set lo up; .venv/bin/python -m …'`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    TOOL,
    Bench,
    Samples,
    bench_sandbox,
    compile_toolbox,
    machine,
    measure,
    ratio_line,
    report,
)
from toolbox.errors import RecoveryError
from toolbox.etcd.snapshot import verify_file
from toolbox.sandbox import workload
from toolbox.sandbox.binaries import require_kube_apiserver
from toolbox.sandbox.cluster import Sandbox

NAMESPACE = "bench-objects"
LABEL = "ocpr-bench=objects"
BACKUP_DIR = "/home/core/bench"
CONFIGMAP_BYTES = 2048  # a small application config
SECRET_BYTES = 1024     # a token, a certificate
SMALL_KEYS_PER_GROUP = 10_000  # ls --keys: one "namespace" of ConfigMaps each
# The anchor: the same create-only transaction as EtcdClient.create, one per key.
CREATE_EACH = """
import pickle, sys, etcd3
host, ca, cert, key, dump = sys.argv[1:]
with open(dump, "rb") as f:
    pairs = pickle.load(f)
client = etcd3.client(host=host, port=2379, ca_cert=ca, cert_cert=cert, cert_key=key,
                      timeout=30)
for k, v in pairs:
    if not client.put_if_not_exists(k, v):
        sys.exit(f"{k!r} exists")
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("ls", "restore"):
        raise SystemExit(f"usage: python -m benchmarks.objects ls|restore [options]\n{__doc__}")
    (ls_main if argv[0] == "ls" else restore_main)(argv[1:])


# ---- snapshot ls ---------------------------------------------------------------------------

def ls_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--keys", type=int, default=0)
    ours, rest = parser.parse_known_args(argv)
    with bench_sandbox(rest, "snapshot ls vs etcdutl snapshot status") as (bench, args):
        if ours.keys:
            _write_small_keys(bench.sandbox, ours.keys)
        snapshot = bench.backup(BACKUP_DIR)
        status = verify_file(snapshot).status
        print(f"snapshot {snapshot.stat().st_size / 2**20:.0f} MiB: {status.live_keys} live "
              f"keys, {status.total_keys} revisions in its buckets")
        host_path = f"{BACKUP_DIR}/{snapshot.name}"
        binaries = bench.sandbox.binaries
        bare_tool = binaries.etcdutl or binaries.etcdctl
        listing = Samples("ocp-recovery snapshot ls")
        filters = {"--namespace x": ["--namespace", "x"], "--prefix /x/": ["--prefix", "/x/"]}
        filtered = {name: Samples(f"snapshot ls {name}") for name in filters}
        theirs = Samples(f"{bare_tool.name} snapshot status")
        for _ in range(args.rounds):
            measure([TOOL, "snapshot", "ls", host_path], bench.env, listing)
            for name, options in filters.items():
                measure([TOOL, "snapshot", "ls", host_path, *options], bench.env,
                        filtered[name])
            measure([str(bare_tool), "snapshot", "status", str(snapshot)],
                    {"PATH": bench.env["PATH"], "ETCDCTL_API": "3"}, theirs)
        report("snapshot ls vs snapshot status", listing, theirs, 1.5)
        for name, samples in filtered.items():
            print(samples.line())
            print(ratio_line(f"snapshot ls {name} vs snapshot status", samples, theirs, 1.5))


def _write_small_keys(sandbox: Sandbox, count: int) -> None:
    """`count` more keys of 1 KiB values, as a cluster's many small objects."""
    started = time.monotonic()
    with workload.kv_client(sandbox, 0, timeout=60) as kv:
        for group in range(0, count, SMALL_KEYS_PER_GROUP):
            workload.write(kv, f"{group // SMALL_KEYS_PER_GROUP:04d}",
                           min(SMALL_KEYS_PER_GROUP, count - group))
    print(f"{count} keys of 1 KiB written in {time.monotonic() - started:.0f} s")


# ---- objects restore -----------------------------------------------------------------------

def restore_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="objects restore of a namespace")
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--etcd", default="3.5")
    args = parser.parse_args(argv)
    try:
        kube_apiserver = require_kube_apiserver()
    except RecoveryError as exc:
        raise SystemExit(exc.render()) from None
    compile_toolbox()
    work = Path(tempfile.mkdtemp(prefix="ocpr-bench-", dir="/var/tmp"))
    sandbox = Sandbox.up(work / "sandbox", masters=1, etcd=args.etcd,
                         kube_apiserver=kube_apiserver)
    try:
        print(f"machine: {machine()}")
        env = {**sandbox.env_vars(0, dict(os.environ)), "OCP_RECOVERY_LOG_FORMAT": "json"}
        _restore_rounds(Bench(sandbox, work, env), args.objects, args.rounds)
    finally:
        sandbox.down()
        shutil.rmtree(work, ignore_errors=True)


def _restore_rounds(bench: Bench, count: int, rounds: int) -> None:
    kubectl(bench, "create", "namespace", NAMESPACE)
    objects = bench.work / "objects.json"
    objects.write_text(json.dumps(object_list(count)))
    created = Samples("setup: kubectl create of the List")
    measure(kubectl_argv(bench, "create", "-f", str(objects)), bench.env, created)
    bench.backup(BACKUP_DIR)
    print(f"namespace {NAMESPACE}: {count} objects made by kubectl create in "
          f"{created.seconds[0]:.1f} s, backed up")
    dump = bench.work / "values.pickle"
    dump_values(bench.sandbox, dump)
    tls = bench.sandbox.client_tls
    anchor_argv = [sys.executable, "-c", CREATE_EACH, bench.sandbox.spec(0).ip, str(tls.ca),
                   str(tls.cert), str(tls.key), str(dump)]
    dry_run = Samples("objects restore --dry-run")
    restore = Samples("objects restore --yes")
    anchor = Samples("python-etcd3, the same creates")
    for _ in range(rounds):
        kubectl(bench, "delete", "configmaps,secrets", "--all", "-n", NAMESPACE)
        measure([TOOL, "objects", "restore", BACKUP_DIR, "--namespace", NAMESPACE,
                 "--dry-run"], bench.env, dry_run)
        measure([TOOL, "objects", "restore", BACKUP_DIR, "--namespace", NAMESPACE, "--yes"],
                bench.env, restore)
        require_served(bench, count)
        kubectl(bench, "delete", "configmaps,secrets", "--all", "-n", NAMESPACE)
        measure(anchor_argv, bench.env, anchor)
        require_served(bench, count)
    for samples in (dry_run, restore, anchor):
        print(samples.line())
    rate = count / restore.median
    verdict = "meets" if restore.median < 10 else "MISSES"
    print(f"objects restore of {count} objects: {restore.median:.2f} s, {rate:.0f} objects/s "
          f"(target < 10 s for 1000) {verdict}; the plan alone {dry_run.median:.2f} s; "
          f"x{restore.median / anchor.median:.2f} python-etcd3's creates")
    print(f"toolbox peak RSS {max(dry_run.peak_rss_kib + restore.peak_rss_kib) / 1024:.1f} MiB")


def object_list(count: int) -> dict[str, object]:
    """Half ConfigMaps, half Secrets, one List, labelled so the check can count them."""
    key, value = LABEL.split("=")
    items: list[dict[str, object]] = []
    for i in range(count):
        meta = {"name": f"obj-{i:05d}", "namespace": NAMESPACE, "labels": {key: value}}
        text = workload.value_for(f"{NAMESPACE}/{i}", CONFIGMAP_BYTES // 2).hex()
        if i % 2:
            data = base64.b64encode(text[:SECRET_BYTES].encode()).decode()
            items.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                          "type": "Opaque", "data": {"token": data}})
        else:
            items.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                          "data": {"config.yaml": text}})
    return {"apiVersion": "v1", "kind": "List", "items": items}


def require_served(bench: Bench, count: int) -> None:
    """The API server lists all `count` labelled objects (a restore that wrote them to etcd
    but not so the API server reads them would not count)."""
    names = kubectl(bench, "get", "configmaps,secrets", "-n", NAMESPACE, "-l", LABEL,
                    "-o", "name").split()
    if len(names) != count:
        raise SystemExit(f"the API server serves {len(names)} of the {count} objects of "
                         f"{NAMESPACE} after the restore")


def dump_values(sandbox: Sandbox, dump: Path) -> None:
    """The live keys and bytes of the namespace's ConfigMaps and Secrets, for the anchor."""
    pairs = []
    with workload.kv_client(sandbox, 0) as kv:
        for resource in ("configmaps", "secrets"):
            for value, meta in kv.get_prefix(f"/kubernetes.io/{resource}/{NAMESPACE}/obj-"):
                pairs.append((meta.key, value))
    dump.write_bytes(pickle.dumps(pairs))


def kubectl_argv(bench: Bench, *args: str) -> list[str]:
    kubectl_path = shutil.which("kubectl") or "/usr/bin/kubectl"
    return [kubectl_path, "--kubeconfig", str(bench.sandbox.admin_kubeconfig), *args]


def kubectl(bench: Bench, *args: str) -> str:
    done = subprocess.run(kubectl_argv(bench, *args), env=bench.env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


if __name__ == "__main__":
    main()
