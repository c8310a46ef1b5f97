"""One S3 bucket through boto3, as the AWS SDK configures itself: credentials, region,
profile, AWS_ENDPOINT_URL, AWS_CA_BUNDLE and HTTPS_PROXY/NO_PROXY come from the environment
and ~/.aws, never from our journal or logs. Every failure is an ObjectStoreError (exit 16)
naming what failed and what to check."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from toolbox import log
from toolbox.errors import IntegrityError, InvalidInput, ObjectStoreError

_log = log.get(__name__)

PART_SIZE = 8 << 20       # 10,000 parts (S3's limit) cover 80 GB
PARALLEL_PARTS = 3        # parts in flight: memory is about (PARALLEL_PARTS + 2) x PART_SIZE
# Reads: ranged GETs, as boto3's download_file does. A range's body is held twice while
# urllib3 joins it; 8 MiB x 3 was the fastest under 150 MiB (benchmarks/offsite.py).
RANGE_SIZE = 8 << 20
RANGES_AHEAD = 3
M_MMAP_THRESHOLD = -3     # glibc's mallopt parameter
MMAP_THRESHOLD = 4 << 20  # above the 1 MiB blocks (reused from the heap), below a part
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0      # a full store (Ceph: OSD full) holds a request open: fail, do not hang


@dataclass(frozen=True)
class Retention:
    """Object Lock retention put on every object of an upload."""
    mode: str               # GOVERNANCE or COMPLIANCE
    until: dt.datetime


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: dt.datetime


class Bucket:
    def __init__(self, client: Any, name: str, endpoint: str):
        self._client = client
        self.name = name
        self.endpoint = endpoint

    @classmethod
    def connect(cls, name: str, endpoint_url: str | None = None, region: str | None = None
                ) -> Bucket:
        _fix_mmap_threshold()
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        config = Config(
            connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(PARALLEL_PARTS, RANGES_AHEAD) + 2,
            # Path-style works on AWS, Ceph and MinIO alike, and on an endpoint given as an IP.
            s3={"addressing_style": "path"},
            # Ceph 16 and other S3-compatible stores reject the SDK's default CRC trailers;
            # every part carries a Content-MD5 the server checks instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        try:
            client = boto3.session.Session(region_name=region).client(
                "s3", endpoint_url=endpoint_url or None, config=config)
        except BotoCoreError as exc:
            raise ObjectStoreError(f"cannot set up the S3 client: {exc}",
                                   state="unchanged: nothing was sent") from exc
        except ValueError as exc:  # botocore's "Invalid endpoint: s3.example.com"
            raise InvalidInput(f"the S3 endpoint is not a URL: {exc}",
                               next_step="give --endpoint-url (or AWS_ENDPOINT_URL) with its "
                               "scheme, e.g. https://s3.example.com:443") from exc
        return cls(client, name, client.meta.endpoint_url)

    # ---- reading -----------------------------------------------------------------------
    def check_access(self) -> None:
        """The bucket exists and these credentials may use it: before anything is sent."""
        with self._errors("use the bucket", ""):
            self._client.head_bucket(Bucket=self.name)

    def object_lock_enabled(self) -> bool:
        from botocore.exceptions import ClientError

        with self._errors("read the Object Lock configuration", ""):
            try:
                answer = self._client.get_object_lock_configuration(Bucket=self.name)
            except ClientError as exc:
                if _code(exc) in ("ObjectLockConfigurationNotFoundError",
                                  "NoSuchObjectLockConfiguration", "InvalidRequest"):
                    return False
                raise
        return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def list_objects(self, prefix: str) -> list[StoredObject]:
        found = []
        with self._errors("list", prefix):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.name, Prefix=prefix):
                found += [StoredObject(o["Key"], o["Size"], o["LastModified"])
                          for o in page.get("Contents", [])]
        return found

    def get_bytes(self, key: str, limit: int) -> bytes:
        """A small object whole (a manifest); one larger than `limit` is refused unread: a
        hostile store must not make us hold gigabytes."""
        data = self._read_range(key, f"bytes=0-{limit}")
        if len(data) > limit:
            raise IntegrityError(f"s3://{self.name}/{key} is larger than {limit} bytes: not a "
                                 "manifest ocp-recovery wrote",
                                 state="unchanged: nothing was written on this host",
                                 next_step="use another set; keep this one for analysis")
        return data

    def open(self, key: str) -> ObjectReader:
        with self._errors("read", key):
            size = int(self._client.head_object(Bucket=self.name, Key=key)["ContentLength"])
        return ObjectReader(self, key, size)

    def digest(self, key: str) -> tuple[int, str]:
        """(size, sha256) of a stored object, streamed: what the server really holds."""
        reader = self.open(key)
        sha256 = hashlib.sha256()
        size = 0
        try:
            while block := reader.read_block():
                sha256.update(block)
                size += len(block)
        finally:
            reader.close()
        return size, sha256.hexdigest()

    def _read_range(self, key: str, byte_range: str) -> bytes:
        with self._errors("read", key):
            body = self._client.get_object(Bucket=self.name, Key=key,
                                           Range=byte_range)["Body"]
            data: bytes = body.read()
        return data

    def _get_range(self, key: str, start: int, end: int) -> bytes:
        data = self._read_range(key, f"bytes={start}-{end - 1}")
        if len(data) != end - start:
            raise IntegrityError(f"s3://{self.name}/{key} returned {len(data)} bytes for a "
                                 f"range of {end - start}: the object changed while read",
                                 state="unchanged: what was read from it was discarded",
                                 next_step="run the same command again")
        return data

    def retained_until(self, key: str) -> dt.datetime | None:
        with self._errors("read the retention of", key):
            head = self._client.head_object(Bucket=self.name, Key=key)
        until = head.get("ObjectLockRetainUntilDate")
        return until if isinstance(until, dt.datetime) and until > _now() else None

    # ---- writing -----------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, retention: Retention | None) -> None:
        with self._errors("upload", key):
            self._client.put_object(Bucket=self.name, Key=key, Body=data,
                                    ContentMD5=_md5(data), **_lock_args(retention))

    @contextlib.contextmanager
    def upload(self, key: str, retention: Retention | None) -> Iterator[PartWriter]:
        """A writer whose bytes become `key`; the object exists only if the block ends
        without an exception (otherwise the multipart upload is aborted)."""
        writer = PartWriter(self, key, retention)
        try:
            yield writer
            writer.complete()
        except BaseException:
            writer.abort()
            raise

    def delete_all_versions(self, keys: list[str]) -> None:
        """Every version of `keys` (a versioned bucket keeps the data under a delete
        marker otherwise)."""
        doomed = []
        with self._errors("list the versions of", keys[0] if keys else ""):
            for key in keys:
                for page in self._client.get_paginator("list_object_versions").paginate(
                        Bucket=self.name, Prefix=key):
                    doomed += [{"Key": v["Key"], "VersionId": v["VersionId"]}
                               for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
                               if v["Key"] == key]
        for start in range(0, len(doomed), 1000):
            with self._errors("delete", doomed[start]["Key"]):
                answer = self._client.delete_objects(
                    Bucket=self.name, Delete={"Objects": doomed[start:start + 1000],
                                              "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise ObjectStoreError(
                    f"the store refused to delete {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message', '')}",
                    state="some objects of the set may be deleted, its manifest first")

    def delete_quietly(self, keys: list[str]) -> None:
        """Best effort after a failed upload: the store may be the thing that failed."""
        with contextlib.suppress(Exception):
            self._client.delete_objects(Bucket=self.name, Delete={
                "Objects": [{"Key": k} for k in keys], "Quiet": True})

    # ---- errors ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except ObjectStoreError:
            raise
        except Exception as exc:
            translated = self._translate(exc, action, key)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, exc: Exception, action: str, key: str) -> Any:
        from botocore import exceptions as botocore

        where = f"s3://{self.name}/{key}" if key else f"s3://{self.name}"
        at = f"at {self.endpoint}"
        if isinstance(exc, botocore.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return ObjectStoreError(
                f"cannot {action} {where}: the certificate of {self.endpoint} is not trusted "
                f"({_first_line(exc)})",
                next_step="export AWS_CA_BUNDLE=/path/to/the-store-ca.pem (the CA that signed "
                "the endpoint's certificate), then run the same command again")
        if isinstance(exc, botocore.NoCredentialsError | botocore.PartialCredentialsError):
            return ObjectStoreError(
                f"cannot {action} {where}: no S3 credentials were found",
                next_step="export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                "then run the same command again")
        if isinstance(exc, botocore.ReadTimeoutError):
            return ObjectStoreError(
                f"cannot {action} {where}: the object store {at} accepted the connection but "
                f"did not answer within {READ_TIMEOUT:.0f} s, three times (an overloaded or "
                "full store holds requests open: Ceph does when an OSD is full)",
                next_step="check the store's health and free space (`ceph -s` / its console) "
                "and the network path, then run the same command again")
        # HTTPClientError: also a connection reset or a body cut short mid-transfer, as when
        # the store's daemon dies while a range is read (not the credentials' fault).
        if isinstance(exc, botocore.EndpointConnectionError | botocore.ConnectTimeoutError
                      | botocore.HTTPClientError | botocore.IncompleteReadError
                      | botocore.ProxyConnectionError | ConnectionError):
            return ObjectStoreError(
                f"cannot {action} {where}: the object store {at} did not answer "
                f"({_first_line(exc)})",
                next_step="check the endpoint (--endpoint-url / AWS_ENDPOINT_URL), the network "
                "and HTTPS_PROXY/NO_PROXY, then run the same command again")
        if isinstance(exc, botocore.ClientError):
            code = _code(exc)
            message = exc.response.get("Error", {}).get("Message") or code
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                        "403", "Forbidden", "ExpiredToken", "InvalidToken"):
                return ObjectStoreError(
                    f"the object store {at} refused to {action} {where}: {code} ({message})",
                    next_step="check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
                    "and that this key may read and write the bucket")
            if code in ("NoSuchBucket", "404", "NotFound") and not key:
                return ObjectStoreError(
                    f"bucket {self.name} does not exist {at}",
                    next_step=f"create it (e.g. `aws s3 mb s3://{self.name}`) or correct the "
                    "URL, then run the same command again")
            if code in ("NoSuchKey", "404", "NotFound"):
                return IntegrityError(
                    f"{where} is missing from the store {at}",
                    state="unchanged: nothing was written on this host",
                    next_step="list the complete sets with `ocp-recovery backup ls "
                    f"s3://{self.name}/…` and use one of them")
            if code == "BadDigest":
                return ObjectStoreError(
                    f"the object store {at} rejected a part of {where}: its Content-MD5 did "
                    "not match what arrived (corrupted in transit)",
                    next_step="run the same command again; if it repeats, check the network "
                    "path (proxies) to the store")
            return ObjectStoreError(f"the object store {at} refused to {action} {where}: "
                                    f"{code} ({message})")
        if isinstance(exc, botocore.BotoCoreError):
            return ObjectStoreError(f"cannot {action} {where} {at}: {_first_line(exc)}")
        return None


class PartWriter:
    """A multipart upload fed by write(): full parts go out in PARALLEL_PARTS threads, each
    with its Content-MD5; the sha256 and size of everything written are kept (the ciphertext
    recorded in the manifest). A small object is one PUT. The sha256 is taken a part at a
    time (one call per part, not per 64 KiB write)."""

    def __init__(self, bucket: Bucket, key: str, retention: Retention | None):
        self._bucket = bucket
        self.key = key
        self._retention = retention
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._slots = threading.BoundedSemaphore(PARALLEL_PARTS)
        self._pool: ThreadPoolExecutor | None = None
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        if self._pending_size >= PART_SIZE:
            self._send_part()
        return len(data)

    def flush(self) -> None:
        pass

    def complete(self) -> None:
        if self._upload_id is None:
            data = b"".join(self._pending)
            self.sha256.update(data)
            self._bucket.put_bytes(self.key, data, self._retention)
            self._pending = []
            return
        if self._pending_size or not self._parts:
            self._send_part()
        parts = [future.result() for future in self._parts]
        with self._bucket._errors("complete the upload of", self.key):
            self._bucket._client.complete_multipart_upload(
                Bucket=self._bucket.name, Key=self.key, UploadId=self._upload_id,
                MultipartUpload={"Parts": parts})
        self._close_pool()

    def abort(self) -> None:
        if self._pool is not None:
            for future in self._parts:
                future.cancel()
            self._close_pool()
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._bucket._client.abort_multipart_upload(
                    Bucket=self._bucket.name, Key=self.key, UploadId=self._upload_id)

    def _send_part(self) -> None:
        data = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        self.sha256.update(data)
        if self._upload_id is None:
            with self._bucket._errors("start the upload of", self.key):
                self._upload_id = self._bucket._client.create_multipart_upload(
                    Bucket=self._bucket.name, Key=self.key,
                    **_lock_args(self._retention))["UploadId"]
            self._pool = ThreadPoolExecutor(PARALLEL_PARTS, thread_name_prefix="s3-part")
        for done in self._parts:  # a failed part stops the upload at the next one
            if done.done() and done.exception() is not None:
                done.result()
        self._slots.acquire()
        assert self._pool is not None
        number = len(self._parts) + 1
        future = self._pool.submit(self._upload_part, number, data)
        future.add_done_callback(lambda _: self._slots.release())
        self._parts.append(future)

    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        with self._bucket._errors("upload a part of", self.key):
            answer = self._bucket._client.upload_part(
                Bucket=self._bucket.name, Key=self.key, UploadId=self._upload_id,
                PartNumber=number, Body=data, ContentMD5=_md5(data))
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class ObjectReader:
    """A stored object read in order through ranged GETs of RANGE_SIZE, RANGES_AHEAD of
    them in flight (what boto3's download_file does), served in slices of any size: age
    reads 8 KiB at a time. The object's length is taken first, so a truncated object shows
    as a short range, not a short read."""

    def __init__(self, bucket: Bucket, key: str, size: int):
        self._bucket = bucket
        self.key = key
        self.size = size
        self._pool = ThreadPoolExecutor(RANGES_AHEAD, thread_name_prefix="s3-range")
        self._ranges = [(start, min(start + RANGE_SIZE, size))
                        for start in range(0, size, RANGE_SIZE)]
        self._next = 0
        self._ahead: list[Future[bytes]] = []
        self._block = memoryview(b"")
        self._fill()

    def _fill(self) -> None:
        while len(self._ahead) < RANGES_AHEAD and self._next < len(self._ranges):
            start, end = self._ranges[self._next]
            self._ahead.append(self._pool.submit(self._bucket._get_range, self.key, start, end))
            self._next += 1

    def read_block(self) -> memoryview:
        """The rest of the current block, or the next one; empty at the end."""
        if not self._block:
            if not self._ahead:
                return memoryview(b"")
            self._block = memoryview(self._ahead.pop(0).result())
            self._fill()
        block, self._block = self._block, memoryview(b"")
        return block

    def read(self, n: int = -1) -> bytes:
        block = self._block or self.read_block()
        if n < 0 or n >= len(block):
            self._block = memoryview(b"")
            return bytes(block)
        self._block = block[n:]
        return bytes(block[:n])

    def close(self) -> None:
        for future in self._ahead:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _fix_mmap_threshold() -> None:
    """Parts and ranges are megabytes, allocated and freed in several threads. glibc raises
    its mmap threshold after each such free, so later ones come from the heaps, which then
    grow with the object's size (measured: 171 MiB peak at 1 GiB against 122 MiB at
    100 MiB). A fixed threshold keeps parts and ranges mmapped and the peak flat (107 MiB at
    both); 1 MiB instead of 4 cost a quarter more time at 1 GiB (every block an mmap)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl): nothing to fix
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def retention_for(days: int, mode: str, now: Callable[[], dt.datetime] | None = None
                  ) -> Retention:
    return Retention(mode.upper(), (now or _now)() + dt.timedelta(days=days))


def _lock_args(retention: Retention | None) -> dict[str, Any]:
    if retention is None:
        return {}
    return {"ObjectLockMode": retention.mode, "ObjectLockRetainUntilDate": retention.until}


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
