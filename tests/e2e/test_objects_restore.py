"""Issue 16 as a user sees it, on a sandbox with the real kube-apiserver (v1.20, secrets
encrypted at rest with aescbc, as OpenShift 4.3 does it) and kube-controller-manager: a
namespace holding a ConfigMap, a Secret, a Deployment and a custom resource is backed up,
deleted with kubectl until it is gone, and put back with `objects restore`; `kubectl get`
shows every object with its data and a watch started before sees them arrive. A second run
and a --dry-run change nothing; a ConfigMap changed after the backup is replaced only with
--replace. `snapshot ls/get/diff` read the same backup offline, and `snapshot browse` serves
it whole without touching the live etcd."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_etcd, require_kube_apiserver, require_kube_controller_manager
from tests.e2e.helpers import BIN, command
from toolbox.errors import PreconditionFailed
from toolbox.journal import execute
from toolbox.objects.backup import Selection
from toolbox.procedures import objects_restore
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drill_report import master_context

pytestmark = pytest.mark.timeout(900)

BACKUP = "/home/core/backup"
SHOP, CAFE = "shop", "cafe"
GONE_TIMEOUT = 120.0
WIDGETS = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    binary = require_kube_apiserver()
    require_kube_controller_manager()
    require_etcd("3.5")
    sb = Sandbox.up(tmp_path_factory.mktemp("objects") / "sb", masters=1, etcd="3.5",
                    kube_apiserver=binary)
    yield sb
    sb.down()


def kubectl(sandbox: Sandbox, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["kubectl", "--kubeconfig", str(sandbox.admin_kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)
    assert not check or done.returncode == 0, done.stderr
    return done


def apply(sandbox: Sandbox, *objects: dict[str, Any]) -> None:
    kubectl(sandbox, "apply", "-f", "-", stdin=yaml.safe_dump_all(objects))


def get_json(sandbox: Sandbox, *args: str) -> dict[str, Any]:
    return dict(json.loads(kubectl(sandbox, "get", *args, "-o", "json").stdout))


def toolbox(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return command(sandbox, 0, *args)


def etcd_dump(sandbox: Sandbox) -> dict[bytes, bytes]:
    """Every live key and value but the leases and events the control plane keeps writing:
    what `unchanged` means for etcd."""
    with sandbox.client(0, timeout=10) as client:
        keys = [k for k, _ in client.keys(b"") if b"/leases/" not in k and b"/events/" not in k]
        values = {k: client.get(k) for k in keys}
    return {k: v.value for k, v in values.items() if v is not None}


def shop_objects() -> list[dict[str, Any]]:
    meta = {"namespace": SHOP}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SHOP}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prices", **meta},
         "data": {"apple": "3", "pear": "4"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", **meta},
         "type": "Opaque", "data": {"password": base64.b64encode(b"hunter2").decode()}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", **meta},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "web",
                                                        "image": "registry.local/web:1.2"}]}}}},
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", **meta},
         "spec": {"size": "large", "colour": "teal"}},
    ]


@pytest.fixture(scope="module")
def backed_up(sandbox: Sandbox) -> dict[str, Any]:
    apply(sandbox, WIDGETS)
    kubectl(sandbox, "wait", "--for=condition=Established", "crd/widgets.example.com",
            "--timeout=60s")
    apply(sandbox, *shop_objects())
    apply(sandbox, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CAFE}},
          {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "menu", "namespace": CAFE}, "data": {"soup": "tomato"}})
    before = {"configmap": get_json(sandbox, "configmap", "prices", "-n", SHOP),
              "secret": get_json(sandbox, "secret", "db", "-n", SHOP),
              "deployment": get_json(sandbox, "deployment", "web", "-n", SHOP),
              "widget": get_json(sandbox, "widget", "w1", "-n", SHOP)}
    done = toolbox(sandbox, "backup", BACKUP)
    assert done.returncode == 0, done.stderr
    return before


@pytest.fixture(scope="module")
def deleted(sandbox: Sandbox, backed_up: dict[str, Any]) -> None:
    """`kubectl delete namespace shop`, and wait until it is gone."""
    kubectl(sandbox, "delete", "namespace", SHOP, "--wait=false")
    deadline = time.monotonic() + GONE_TIMEOUT
    while kubectl(sandbox, "get", "namespace", SHOP, check=False).returncode == 0:
        assert time.monotonic() < deadline, f"namespace {SHOP} still there after " \
            f"{GONE_TIMEOUT:.0f}s (is the kube-controller-manager running?)"
        time.sleep(1)
    assert not kubectl(sandbox, "get", "configmaps", "-n", SHOP, "-o", "name").stdout


@pytest.fixture(scope="module")
def restored(sandbox: Sandbox, deleted: None) -> dict[str, Any]:
    """A watch started first, then a --dry-run, then the restore."""
    # kubectl watches one resource type at a time
    watches = [subprocess.Popen(
        ["kubectl", "--kubeconfig", str(sandbox.admin_kubeconfig), "get", resource, "-n", SHOP,
         "--watch", "-o", "name"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for resource in ("configmaps", "secrets", "deployments", "widgets")]
    time.sleep(2)  # the watch is established before anything is written
    before_dry_run = etcd_dump(sandbox)
    dry = toolbox(sandbox, "objects", "restore", BACKUP, "--namespace", SHOP, "--dry-run")
    after_dry_run = etcd_dump(sandbox)
    done = toolbox(sandbox, "objects", "restore", BACKUP, "--namespace", SHOP, "--yes",
                   "--json")
    time.sleep(2)
    seen = []
    for watch in watches:
        watch.terminate()
        out, err = watch.communicate(timeout=30)
        seen += out.split() or [f"(nothing: {err.strip()})"]
    return {"dry": dry, "dry_unchanged": before_dry_run == after_dry_run, "done": done,
            "watched": seen}


def test_objects_of_a_deleted_namespace_are_refused_without_the_namespace(
        sandbox: Sandbox, deleted: None) -> None:
    """Runs before the restore (file order): --resource leaves the namespace out."""
    before = etcd_dump(sandbox)
    refused = toolbox(sandbox, "objects", "restore", BACKUP, "--namespace", SHOP,
                      "--resource", "configmaps", "--yes")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert f"namespace {SHOP} does not exist in the live cluster" in refused.stderr
    assert f"--namespace {SHOP} without --resource" in refused.stderr
    assert etcd_dump(sandbox) == before


def test_objects_restore_brings_the_deleted_namespace_back(
        sandbox: Sandbox, backed_up: dict[str, Any], restored: dict[str, Any]) -> None:
    done = restored["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["created"] == 5 and result["changed"] == []
    assert get_json(sandbox, "namespace", SHOP)["status"]["phase"] == "Active"
    assert get_json(sandbox, "configmap", "prices", "-n", SHOP)["data"] == \
        backed_up["configmap"]["data"]
    secret = get_json(sandbox, "secret", "db", "-n", SHOP)
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"
    deployment = get_json(sandbox, "deployment", "web", "-n", SHOP)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.local/web:1.2"
    assert deployment["metadata"]["uid"] == backed_up["deployment"]["metadata"]["uid"]
    assert get_json(sandbox, "widget", "w1", "-n", SHOP)["spec"] == \
        {"size": "large", "colour": "teal"}


def test_a_watch_started_before_the_restore_sees_the_objects(restored: dict[str, Any]) -> None:
    assert {"configmap/prices", "secret/db", "deployment.apps/web",
            "widget.example.com/w1"} <= set(restored["watched"])


def test_dry_run_changes_nothing(restored: dict[str, Any]) -> None:
    assert restored["dry"].returncode == 0, restored["dry"].stderr
    assert "create 5 key(s)" in restored["dry"].stdout
    assert restored["dry_unchanged"]


def test_a_second_run_changes_nothing(sandbox: Sandbox, restored: dict[str, Any]) -> None:
    before = etcd_dump(sandbox)
    again = toolbox(sandbox, "objects", "restore", BACKUP, "--namespace", SHOP, "--yes")
    assert again.returncode == 0, again.stderr
    assert "nothing to write" in again.stdout
    assert etcd_dump(sandbox) == before


def test_a_changed_configmap_is_replaced_only_with_replace(sandbox: Sandbox,
                                                           backed_up: dict[str, Any]) -> None:
    kubectl(sandbox, "patch", "configmap", "menu", "-n", CAFE, "--type=merge",
            "-p", '{"data":{"soup":"leek"}}')
    plain = toolbox(sandbox, "objects", "restore", BACKUP, "--namespace", CAFE, "--yes")
    assert plain.returncode == 0, plain.stderr
    assert f"/kubernetes.io/configmaps/{CAFE}/menu" in plain.stdout
    assert get_json(sandbox, "configmap", "menu", "-n", CAFE)["data"] == {"soup": "leek"}
    replaced = toolbox(sandbox, "objects", "restore", BACKUP, "--namespace", CAFE,
                       "--replace", "--yes")
    assert replaced.returncode == 0, replaced.stderr
    assert get_json(sandbox, "configmap", "menu", "-n", CAFE)["data"] == {"soup": "tomato"}


def test_snapshot_ls_lists_the_namespace_offline(sandbox: Sandbox, backed_up: Any) -> None:
    done = toolbox(sandbox, "snapshot", "ls", BACKUP, "--namespace", SHOP, "--json")
    assert done.returncode == 0, done.stderr
    listed = {(k["resource"], k["name"]): k for k in json.loads(done.stdout)["keys"]}
    assert set(listed) == {("namespaces", SHOP), ("configmaps", "prices"), ("secrets", "db"),
                           ("deployments", "web"), ("widgets.example.com", "w1")}
    assert listed[("secrets", "db")]["encoding"] == "encrypted"
    assert listed[("configmaps", "prices")]["encoding"] == "protobuf"
    assert listed[("widgets.example.com", "w1")]["encoding"] == "json"
    assert listed[("configmaps", "prices")]["mod_revision"] == \
        int(backed_up["configmap"]["metadata"]["resourceVersion"])
    typo = toolbox(sandbox, "snapshot", "ls", BACKUP, "--namespace", "shpo")
    assert typo.returncode == 0 and "did you mean shop?" in typo.stdout, typo.stdout
    typo = toolbox(sandbox, "snapshot", "ls", BACKUP, "-n", SHOP, "--resource", "configmap")
    assert "did you mean configmaps?" in typo.stdout, typo.stdout


def test_snapshot_get_shows_the_secret_decrypted(sandbox: Sandbox, backed_up: Any) -> None:
    done = toolbox(sandbox, "snapshot", "get", BACKUP, f"/kubernetes.io/secrets/{SHOP}/db")
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)
    assert base64.b64decode(shown["data"]["password"]) == b"hunter2"
    assert shown["metadata"]["uid"] == backed_up["secret"]["metadata"]["uid"]
    raw = subprocess.run([str(BIN / "ocp-recovery"), "snapshot", "get", BACKUP,
                          f"/kubernetes.io/secrets/{SHOP}/db", "-o", "raw"],
                         env=sandbox.env_vars(0, dict(os.environ)), capture_output=True,
                         timeout=60)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.startswith(b"k8s:enc:aescbc:v1:1:") and b"hunter2" not in raw.stdout


def test_snapshot_diff_live_shows_what_the_deletion_removed(sandbox: Sandbox,
                                                             backed_up: Any) -> None:
    kubectl(sandbox, "create", "configmap", "extra", "-n", CAFE, "--from-literal=a=b")
    done = toolbox(sandbox, "snapshot", "diff", BACKUP, "--live", "--namespace", CAFE,
                   "--json")
    assert done.returncode == 0, done.stderr
    changes = {c["key"]: c["change"] for c in json.loads(done.stdout)["changes"]}
    assert changes[f"/kubernetes.io/configmaps/{CAFE}/extra"] == "added"


def test_snapshot_browse_serves_the_backup_and_stop_removes_it(sandbox: Sandbox,
                                                               backed_up: Any) -> None:
    live_before = etcd_dump(sandbox)
    journal_before = json.loads(toolbox(sandbox, "status", "--json").stdout)
    snapshot = next((sandbox.root(0) / BACKUP.lstrip("/")).glob("snapshot_*.db")).name
    # A file of a set means the set: its archive's keys decrypt the Secrets.
    done = toolbox(sandbox, "snapshot", "browse", f"{BACKUP}/{snapshot}", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    kubeconfig = sandbox.root(0) / \
        "etc/kubernetes/static-pod-resources/ocp-recovery-browse-pod/admin.kubeconfig"
    shown = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "deployment",
                            "web", "-n", SHOP, "-o", "json"], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["metadata"]["uid"] == \
        backed_up["deployment"]["metadata"]["uid"]
    secret = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "secret", "db",
                             "-n", SHOP, "-o", "json"], capture_output=True, text=True,
                            timeout=60)
    assert secret.returncode == 0, secret.stderr
    assert base64.b64decode(json.loads(secret.stdout)["data"]["password"]) == b"hunter2"
    stopped = toolbox(sandbox, "snapshot", "browse", "--stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not Path(kubeconfig).parent.exists()
    assert not (sandbox.root(0) / "etc/kubernetes/manifests/ocp-recovery-browse-pod.yaml").exists()
    assert etcd_dump(sandbox) == live_before
    # Not journaled: the last restore's rollback is still the one offered.
    assert json.loads(toolbox(sandbox, "status", "--json").stdout).get("id") == \
        journal_before.get("id")
    again = toolbox(sandbox, "snapshot", "browse", "--stop")
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def test_a_namespace_deleted_while_the_plan_waits_is_refused_before_writing(
        sandbox: Sandbox, backed_up: Any) -> None:
    """The operator confirms late: the namespace went Terminating since the plan."""
    kubectl(sandbox, "delete", "configmap", "menu", "-n", CAFE)
    ctx = master_context(sandbox, 0, os.environ)
    request = objects_restore.RestoreRequest(BACKUP, Selection(namespace=CAFE))
    plan = objects_restore.PROCEDURE.plan(ctx, request)
    assert plan.create == (f"/kubernetes.io/configmaps/{CAFE}/menu",)
    apply(sandbox, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "held", "namespace": CAFE, "finalizers": ["example.com/hold"]}})
    kubectl(sandbox, "delete", "namespace", CAFE, "--wait=false")
    # The namespace controller empties it but for the held one: let it finish first, so
    # that etcd changes only if the restore writes.
    deadline = time.monotonic() + GONE_TIMEOUT
    while kubectl(sandbox, "get", "configmaps", "-n", CAFE, "-o", "name").stdout.split() != \
            ["configmap/held"]:
        assert time.monotonic() < deadline, "the namespace controller did not empty it"
        time.sleep(1)
    time.sleep(2)
    before = etcd_dump(sandbox)
    with pytest.raises(PreconditionFailed, match=f"namespace {CAFE} is Terminating"):
        execute(ctx, objects_restore.PROCEDURE, plan)
    assert etcd_dump(sandbox) == before
