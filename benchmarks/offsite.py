"""Off-site upload and fetch vs boto3's own transfer of the same bytes, same server, same run.

    python -m benchmarks.offsite [--size-mib 1024] [--rounds 3] [--etcd 3.5]

A 1-master sandbox filled to the size, one backup set made on it (not timed), a real S3 store
(Ceph RADOS Gateway on bluestore, on a loopback address). Then, round by round:
- `ocp-recovery backup push` of the set (encrypt + multipart upload with Content-MD5 + read
  back and hash every object + manifest) against boto3 `upload_file` of the same two files,
  unencrypted and unverified; the push's own log line gives the time before the read-back,
  hence the ratio without it too;
- `ocp-recovery backup fetch` (download + decrypt + both hashes + the local verification)
  against boto3 `download_file` of the two plaintext objects.
Targets (issue 15): upload <= 2.2 x, without the read-back <= 1.15 x, fetch <= 1.15 x, toolbox
peak RSS < 150 MiB and flat in the set's size.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

from benchmarks.common import TOOL, Samples, bench_sandbox, measure, ratio_line
from toolbox.sandbox.objectstore import ObjectStore
from toolbox.store.encryption import new_identity

STORE_IP = "127.0.0.9"
BUCKET = "bench"
BOTO3_UPLOAD = """
import sys, boto3
from botocore.config import Config
client = boto3.client("s3", config=Config(
    request_checksum_calculation="when_required", response_checksum_validation="when_required",
    s3={"addressing_style": "path"}))
bucket, prefix, *files = sys.argv[1:]
for f in files:
    client.upload_file(f, bucket, prefix + "/" + f.rsplit("/", 1)[1])
"""
BOTO3_DOWNLOAD = """
import sys, boto3
from botocore.config import Config
client = boto3.client("s3", config=Config(
    request_checksum_calculation="when_required", response_checksum_validation="when_required",
    s3={"addressing_style": "path"}))
bucket, prefix, target, *names = sys.argv[1:]
for n in names:
    client.download_file(bucket, prefix + "/" + n, target + "/" + n)
"""


def main(argv: list[str] | None = None) -> None:
    with bench_sandbox(argv, __doc__.split("\n\n")[0]) as (bench, args):
        store = ObjectStore.up(bench.work / "store", STORE_IP, backend="bluestore",
                               size_bytes=max(8 << 30, args.size_mib * (6 << 20)))
        try:
            _run(bench, args, store)
        finally:
            store.stop()


def _run(bench, args, store: ObjectStore) -> None:  # type: ignore[no-untyped-def]
    env = {**bench.env, **store.env()}
    store.create_bucket(BUCKET)
    snapshot = bench.backup()
    local_dir = snapshot.parent
    files = sorted(str(p) for p in local_dir.iterdir() if not p.name.endswith(".json"))
    names = [os.path.basename(f) for f in files]
    identity_text, recipient = new_identity()
    identity = bench.sandbox.root(0) / "root/bench-identity.txt"
    identity.parent.mkdir(exist_ok=True)
    identity.write_text(identity_text)
    size = sum(os.path.getsize(f) for f in files)
    print(f"set: {size / 2**20:.0f} MiB ({', '.join(names)}); store: {store.endpoint_https}")
    push, plain_up = Samples("ocp-recovery backup push"), Samples("boto3 upload_file")
    fetch, plain_down = Samples("ocp-recovery backup fetch"), Samples("boto3 download_file")
    sent = Samples("push before its read-back")
    fetched = bench.sandbox.root(0) / "root/bench-fetched"
    plain_dir = bench.work / "plain-down"
    for round_number in range(args.rounds):
        prefix = f"r{round_number}"
        log_lines = _measure_logged([TOOL, "--log-format", "json", "backup", "push",
                                     str(local_dir).replace(str(bench.sandbox.root(0)), ""),
                                     f"s3://{BUCKET}/ours-{prefix}", "-r", recipient,
                                     "--no-progress"], env, push)
        done = next(line for line in log_lines if line.get("event") == "backup.upload.done")
        sent.seconds.append(push.seconds[-1] - (done["seconds"] - done["sent_seconds"]))
        sent.peak_rss_kib.append(push.peak_rss_kib[-1])
        measure([sys.executable, "-c", BOTO3_UPLOAD, BUCKET, f"plain-{prefix}", *files], env,
                plain_up)
        measure([TOOL, "backup", "fetch", f"s3://{BUCKET}/ours-{prefix}", "/root/bench-fetched",
                 "-i", "/root/bench-identity.txt", "--no-progress"], env, fetch)
        # One downloaded copy at a time: at 8 GiB the store, the set and two more copies of
        # it would not fit beside each other on this machine's disk.
        shutil.rmtree(fetched)
        plain_dir.mkdir()
        measure([sys.executable, "-c", BOTO3_DOWNLOAD, BUCKET, f"plain-{prefix}",
                 str(plain_dir), *names], env, plain_down)
        shutil.rmtree(plain_dir)
    for samples in (push, sent, plain_up, fetch, plain_down):
        print(samples.line())
    print(ratio_line("upload (encrypt + upload + read-back) vs upload_file", push, plain_up,
                     2.2))
    print(ratio_line("upload without the read-back vs upload_file", sent, plain_up, 1.15))
    print(ratio_line("fetch (download + decrypt + verify) vs download_file", fetch, plain_down,
                     1.15))
    peak = max(push.peak_rss_kib + fetch.peak_rss_kib) / 1024
    print(f"toolbox peak RSS {peak:.1f} MiB (target < 150 MiB, flat in the set's size)")


def _measure_logged(argv: list[str], env: dict[str, str], samples: Samples) -> list[dict]:  # type: ignore[type-arg]
    """measure(), keeping the JSON log lines the run wrote to stderr."""
    log_path = f"/var/tmp/ocpr-bench-push-{os.getpid()}-{time.monotonic_ns()}.log"
    wrapped = ["/bin/sh", "-c", 'exec "$@" 2>' + log_path, "sh", *argv]
    try:
        measure(wrapped, env, samples)
        with open(log_path) as log_file:
            return [json.loads(line) for line in log_file if line.startswith("{")]
    finally:
        if os.path.exists(log_path):
            os.unlink(log_path)


if __name__ == "__main__":
    main()
