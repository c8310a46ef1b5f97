"""A sandbox with an API server also runs a real kube-controller-manager (1.20) on master-0,
so what a user deletes goes away as on a cluster: a deleted namespace is emptied and removed,
and an object whose owner is gone is garbage-collected."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import (
    missing,
    require_etcd,
    require_kube_apiserver,
    require_kube_controller_manager,
)
from tests.integration.test_sandbox import wait_for
from tests.integration.test_sandbox_apiserver import etcd_keys
from toolbox.kube.client import KubeClient
from toolbox.sandbox.cluster import Sandbox

pytestmark = pytest.mark.timeout(600)
GONE_WITHIN = 60.0


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    binary = require_kube_apiserver()
    require_kube_controller_manager()
    require_etcd("3.5")
    sb = Sandbox.up(tmp_path_factory.mktemp("kcm") / "sb", masters=1, etcd="3.5",
                    kube_apiserver=binary)
    yield sb
    sb.down()


@pytest.fixture(scope="module")
def api(sandbox: Sandbox) -> KubeClient:
    return KubeClient.from_file(sandbox.admin_kubeconfig, timeout=15)


def kubectl(sandbox: Sandbox, *args: str) -> None:
    """As the user: the installer's admin kubeconfig."""
    binary = shutil.which("kubectl")
    if binary is None:
        missing("kubectl")
    done = subprocess.run([binary, "--kubeconfig", str(sandbox.admin_kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def configmap(namespace: str, name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, **meta},
            "data": {"colour": "blue"}}


def test_a_deleted_namespace_is_emptied_and_removed(sandbox: Sandbox, api: KubeClient) -> None:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
    api.create(configmap("doomed", "settings"))
    api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "password", "namespace": "doomed"}, "stringData": {"password": "hunter2"}})
    key = "/kubernetes.io/configmaps/doomed/settings"
    assert key in etcd_keys(sandbox, key)

    kubectl(sandbox, "delete", "namespace", "doomed", "--wait=false")

    wait_for(lambda: api.get("Namespace", "doomed") is None, timeout=GONE_WITHIN)
    assert etcd_keys(sandbox, key) == []
    assert etcd_keys(sandbox, "/kubernetes.io/secrets/doomed/") == []


def test_an_object_whose_owner_is_gone_is_collected(sandbox: Sandbox, api: KubeClient) -> None:
    owner = api.create(configmap("default", "owner"))
    kubectl(sandbox, "delete", "configmap", "owner", "--namespace", "default")
    api.create(configmap("default", "orphan", ownerReferences=[{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner["metadata"]["uid"]}]))
    api.create(configmap("default", "unowned"))

    wait_for(lambda: api.get("ConfigMap", "orphan", "default") is None, timeout=GONE_WITHIN)
    assert api.get("ConfigMap", "unowned", "default") is not None
