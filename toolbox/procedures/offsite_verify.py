"""`backup verify s3://…[/SET] [--identity F]`: is a stored set still what was uploaded?
Without an identity, each object is read back and its size and sha256 compared with the
manifest (streamed, nothing written). With one, each is also decrypted into an unnamed
scratch file (freed on close, even if killed) and checked as a restore would: the plaintext
hash, the snapshot's trailer and bbolt structure, the archive's entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolbox import log
from toolbox.context import Context
from toolbox.errors import IntegrityError, InvalidInput
from toolbox.etcd.snapshot import verify_file
from toolbox.host.archive import inspect_archive
from toolbox.host.files import scratch_file
from toolbox.report import Report
from toolbox.store.encryption import load_identities
from toolbox.store.s3 import Bucket
from toolbox.store.sets import StoredFile, StoredSet, choose_set, decrypt_stored_file, list_sets
from toolbox.store.url import parse_store_url

_log = log.get(__name__)


@dataclass(frozen=True)
class RemoteVerifyRequest:
    url: str
    identity: str | None = None   # host path
    endpoint_url: str | None = None


@dataclass
class SetVerdict:
    url: str
    decrypted: bool
    revision: int | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class RemoteVerifyResult:
    verdicts: list[SetVerdict]

    def report(self) -> Report:
        how = "decrypted and checked as a restore would" if self.verdicts[0].decrypted \
            else "ciphertext sha256 matched (give --identity to also decrypt and check)"
        return Report("backup.verified", f"{len(self.verdicts)} stored set(s) ok: {how}",
                      {"sets": [v.__dict__ for v in self.verdicts]},
                      details=[f"{v.url}: ok" + (f", revision {v.revision}"
                                                  if v.revision is not None else "")
                               for v in self.verdicts])


def run(ctx: Context, request: RemoteVerifyRequest) -> RemoteVerifyResult:
    url = parse_store_url(request.url)
    identities = load_identities(ctx.paths.host(request.identity), request.identity) \
        if request.identity else None
    bucket = Bucket.connect(url.bucket, request.endpoint_url, ctx.aws_region)
    if url.set_name:
        stored_sets, damaged = [choose_set(bucket, url)], {}
    else:
        listing = list_sets(bucket, url)
        stored_sets, damaged = listing.complete, listing.damaged
    if not stored_sets and not damaged:
        raise InvalidInput(f"{url} holds no complete backup set",
                           state="unchanged: the check only reads",
                           next_step=f"check the prefix: ocp-recovery backup ls {url}")
    verdicts = sorted([_verify(ctx, bucket, s, identities) for s in stored_sets]
                      + [SetVerdict(str(url.with_set(name)), identities is not None,
                                    problems=[exc.what]) for name, exc in damaged.items()],
                      key=lambda v: v.url)
    bad = [v for v in verdicts if v.problems]
    if bad:
        raise IntegrityError(
            f"{len(bad)} of {len(verdicts)} stored set(s) failed verification: "
            + "; ".join(f"{v.url}: {', '.join(v.problems)}" for v in bad),
            state="unchanged: the check only reads",
            next_step="restore from a set that verified; keep the failed objects for analysis")
    return RemoteVerifyResult(verdicts)


def _verify(ctx: Context, bucket: Bucket, stored: StoredSet,
            identities: list[Any] | None) -> SetVerdict:
    verdict = SetVerdict(str(stored.url), identities is not None,
                         stored.manifest.get("etcd", {}).get("revision"))
    for stored_file in stored.files:
        try:
            if identities is None:
                if bucket.digest(stored_file.key) != (stored_file.size, stored_file.sha256):
                    verdict.problems.append(f"{stored_file.name}: the stored object's size or "
                                            "sha256 differs from the manifest")
            else:
                _decrypt_and_check(ctx, bucket, stored_file, identities)
        except IntegrityError as exc:
            # Only damage is a verdict on this set: the store unreachable or a wrong identity
            # (other RecoveryErrors) stop the whole check.
            verdict.problems.append(f"{stored_file.name}: {exc.what}")
    _log.info("backup.verify.remote", url=verdict.url, ok=not verdict.problems)
    return verdict


def _decrypt_and_check(ctx: Context, bucket: Bucket, stored: StoredFile,
                       identities: list[Any]) -> None:
    with scratch_file(ctx.paths.state_dir, stored.plaintext_size,
                      f"a decrypted copy of {stored.name} to check") as (stream, path):
        decrypt_stored_file(bucket, stored, stream, identities)
        stream.flush()
        if stored.role == "snapshot":
            verify_file(path, shown=stored.name)
        else:
            inspect_archive(path)
