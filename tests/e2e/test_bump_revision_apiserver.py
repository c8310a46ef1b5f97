"""Guide 3.3 on the expired-certs sandbox's real kube-apiserver (v1.20) with etcd 3.5.16: after
a restore that bumps etcd's revision, the kube-apiserver serves the backup's objects, and a
watch from a resourceVersion of before the restore is told to re-list (410 Expired)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import ApiException, CoreV1Api

from tests.conftest import require_etcd, require_kube_apiserver
from tests.e2e.helpers import cluster_of, command
from toolbox.kube.client import KubeClient
from toolbox.sandbox.binaries import TRIXIE_ETCD
from toolbox.sandbox.cluster import API_TIMEOUT, Sandbox

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    binary = require_kube_apiserver()
    require_etcd(TRIXIE_ETCD)
    sb = Sandbox.up(tmp_path_factory.mktemp("bump-api") / "sb", masters=1, etcd=TRIXIE_ETCD,
                    kube_apiserver=binary)
    yield sb
    sb.down()


def api(sandbox: Sandbox) -> KubeClient:
    return KubeClient.from_file(sandbox.admin_kubeconfig, timeout=15)


def namespaces(client: KubeClient) -> set[str]:
    return {item["metadata"]["name"] for item in client.list("Namespace")}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@pytest.fixture(scope="module")
def restored(sandbox: Sandbox) -> dict[str, Any]:
    """A namespace made before the backup, one after it, then a bumped restore on master-0."""
    client = api(sandbox)
    client.create(namespace("made-before-the-backup"))
    done = command(sandbox, 0, "backup", "/home/core/backup")
    assert done.returncode == 0, done.stderr
    after = client.create(namespace("made-after-the-backup"))
    done = command(sandbox, 0, "restore", "/home/core/backup", "--initial-cluster",
                   cluster_of(sandbox, [0]), "--rewind-healthy-cluster", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    client.wait_ready(API_TIMEOUT, next_step=f"read {sandbox.master_dir(0)}/logs/")
    return {"client": client, "old_resource_version": after["metadata"]["resourceVersion"]}


def test_the_kube_apiserver_serves_the_backups_objects(restored: dict[str, Any]) -> None:
    names = namespaces(restored["client"])
    assert {"default", "kube-system", "made-before-the-backup"} <= names
    assert "made-after-the-backup" not in names


def test_a_watch_from_before_the_restore_must_re_list(restored: dict[str, Any]) -> None:
    """What an informer sees: the watch's first event is an error, 410 Expired."""
    core = CoreV1Api(restored["client"].api)
    with pytest.raises(ApiException) as expired:
        for _ in watch.Watch().stream(core.list_namespace, timeout_seconds=5,
                                      resource_version=restored["old_resource_version"]):
            pass
    assert expired.value.status == 410 and str(expired.value.reason).startswith("Expired")


def test_the_kube_apiserver_writes_after_the_restore(restored: dict[str, Any]) -> None:
    client = restored["client"]
    made = client.create(namespace("made-after-the-restore"))
    assert int(made["metadata"]["resourceVersion"]) > int(restored["old_resource_version"])
    assert "made-after-the-restore" in namespaces(client)
