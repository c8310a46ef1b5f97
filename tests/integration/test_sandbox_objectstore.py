"""The sandbox's object store as a user sees it: a real Ceph RADOS Gateway over HTTPS with
the sandbox's CA, that rejects a bad Content-MD5 and enforces Object Lock; and
`sandbox up --object-store` with the AWS_* exports of `sandbox object-store-env`."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, SSLError

from tests.conftest import SESSION_STORE_IP, require_ceph, require_etcd
from tests.integration.test_sandbox_lifecycle import processes_mentioning
from toolbox.errors import PreconditionFailed
from toolbox.sandbox.objectstore import CHECKSUM_SETTINGS, ObjectStore


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_https_with_the_sandbox_ca_and_not_without(object_store: ObjectStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    object_store.create_bucket("tls-check")
    client = object_store.client()
    client.put_object(Bucket="tls-check", Key="set/snapshot.db.age", Body=b"ciphertext")
    got = client.get_object(Bucket="tls-check", Key="set/snapshot.db.age")["Body"].read()
    assert got == b"ciphertext"
    assert stat.S_IMODE(object_store.tls_pem.stat().st_mode) == 0o600  # radosgw's key

    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    untrusting = boto3.session.Session().client(
        "s3", endpoint_url=object_store.endpoint_https, region_name=object_store.region,
        aws_access_key_id=object_store.access_key,
        aws_secret_access_key=object_store.secret_key, config=Config(**CHECKSUM_SETTINGS))
    with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.get_object(Bucket="tls-check", Key="set/snapshot.db.age")


def test_a_wrong_content_md5_is_rejected_and_nothing_stored(object_store: ObjectStore) -> None:
    object_store.create_bucket("md5-check")
    client = object_store.client()
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket="md5-check", Key="part", Body=b"the bytes sent",
                          ContentMD5=md5(b"the bytes meant"))
    assert error_code(refused) == "BadDigest"
    with pytest.raises(ClientError) as absent:
        client.head_object(Bucket="md5-check", Key="part")
    assert error_code(absent) == "404"


def test_object_lock_governance_holds_until_bypassed(object_store: ObjectStore) -> None:
    object_store.create_bucket("locked-backups", object_lock=True)
    client = object_store.client()
    body = b"a backup that ransomware must not delete"
    version = client.put_object(
        Bucket="locked-backups", Key="manifest.json", Body=body, ContentMD5=md5(body),
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
    )["VersionId"]
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket="locked-backups", Key="manifest.json", VersionId=version)
    assert error_code(refused) == "AccessDenied"
    kept = client.get_object(Bucket="locked-backups", Key="manifest.json", VersionId=version)
    assert kept["Body"].read() == body

    client.delete_object(Bucket="locked-backups", Key="manifest.json", VersionId=version,
                         BypassGovernanceRetention=True)
    with pytest.raises(ClientError) as gone:
        client.head_object(Bucket="locked-backups", Key="manifest.json", VersionId=version)
    assert error_code(gone) == "404"


def test_radosgw_killed_and_started_again_keeps_the_data(object_store: ObjectStore) -> None:
    object_store.create_bucket("restart-check")
    client = object_store.client()
    client.put_object(Bucket="restart-check", Key="before", Body=b"kept")
    object_store.kill_radosgw()
    assert object_store.running()["client.rgw.a"] is False
    with pytest.raises(EndpointConnectionError):
        client.put_object(Bucket="restart-check", Key="during", Body=b"lost")
    object_store.start_radosgw()
    assert client.get_object(Bucket="restart-check", Key="before")["Body"].read() == b"kept"


def test_refused_when_its_address_is_taken_or_ceph_missing(
        object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PreconditionFailed, match=f"{SESSION_STORE_IP}:3300 is already in use"):
        ObjectStore.up(tmp_path / "second", SESSION_STORE_IP)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PreconditionFailed, match="radosgw") as refused:
        ObjectStore.up(tmp_path / "third", "127.0.0.7")
    assert refused.value.next_step == ("apt-get install --no-install-recommends radosgw "
                                       "ceph-mon ceph-osd ceph-common")
    assert list(tmp_path.iterdir()) == []  # nothing made


# A user's shell: only what `eval "$(ocp-recovery sandbox object-store-env)"` exports.
FROM_ENV_ONLY = """
import boto3
s3 = boto3.session.Session().client("s3")
s3.create_bucket(Bucket="from-env")
s3.put_object(Bucket="from-env", Key="k", Body=b"round trip")
print(s3.get_object(Bucket="from-env", Key="k")["Body"].read().decode())
"""


def test_sandbox_up_object_store_env_and_down(run_cli, tmp_path: Path) -> None:
    require_etcd("3.5")
    require_ceph()
    directory = tmp_path / "sb"
    up = run_cli(["sandbox", "up", "--masters", "1", "--object-store", "--dir", str(directory)])
    try:
        assert "object store  127.0.0.9   https://127.0.0.9:8443" in up.stdout
        status = run_cli(["sandbox", "status", "--dir", str(directory)]).stdout
        assert "client.rgw.a up, osd.0 up, mon.a up" in status
        exports = run_cli(["sandbox", "object-store-env", "--dir", str(directory)]).stdout
        done = subprocess.run(
            ["bash", "-c", 'eval "$1" && exec "$2" -c "$3"', "bash", exports, sys.executable,
             FROM_ENV_ONLY],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "round trip\n"
    finally:
        run_cli(["sandbox", "down", "--dir", str(directory)])
    assert not directory.exists()
    assert processes_mentioning(str(directory)) == []
