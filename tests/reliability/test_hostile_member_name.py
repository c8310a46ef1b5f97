"""Member names that are regex metacharacters are plain text: `member remove` (4.3 used the
name as a regex), `member add`'s duplicate check and `restore --name` match them exactly.

Member names are compared with the member list etcd returns, so these tests stand a fake
client in for etcd that answers that list and records removals; the matching itself is the
procedures' own code, reached through the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.hostile import ETCD_DNS, ETCD_IP, backup_set, master_root, refused
from toolbox import legacy
from toolbox.etcd import client
from toolbox.etcd.client import Member, Status
from toolbox.pki import certs
from toolbox.procedures import member_add, member_remove

pytestmark = pytest.mark.hostile("member-name")

MASTERS = ["etcd-member-master-0", "etcd-member-master-1", "etcd-member-master-2"]
METACHARACTERS = ["etcd-member-.*", "etcd-member-master-[0-9]", "(", "etcd-member-master-1|x",
                  "^etcd-member-master-2$", "etcd-member-master-1.*"]
TLS = ["--cacert", "/etc/etcd-client/ca.crt", "--cert", "/etc/etcd-client/client.crt",
       "--key", "/etc/etcd-client/client.key"]


class FakeEtcd:
    """Stands in for EtcdClient (class and connection): the member list, and removals."""

    def __init__(self, names: list[str], local_id: int) -> None:
        self.listed = [Member(i + 1, name, (f"https://10.0.0.{i + 1}:2380",),
                              (f"https://10.0.0.{i + 1}:2379",)) for i, name in enumerate(names)]
        self.local_id = local_id
        self.removed: list[int] = []

    def connect(self, *_: Any, **__: Any) -> FakeEtcd:
        return self

    connect_any = connect

    def __enter__(self) -> FakeEtcd:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def status(self) -> Status:
        return Status("https://10.0.0.1:2379", "3.5.1", 0, 1, 1, 1, self.local_id, 7, 1)

    def members(self) -> list[Member]:
        return [m for m in self.listed if m.id not in self.removed]

    def remove_member(self, member_id: int) -> list[Member]:
        self.removed.append(member_id)
        return self.members()

    def change_membership(self, attempt: Callable[[], Any], done: Callable[[], bool],
                          what: str) -> Any:
        return attempt()


@pytest.fixture
def host(tmp_path: Path) -> Path:
    root = master_root(tmp_path / "host")
    for name in ("ca.crt", "client.crt", "client.key"):
        (root / "etc/etcd-client").mkdir(exist_ok=True)
        (root / "etc/etcd-client" / name).write_text("unused by the fake etcd\n")
    return root


def fake_etcd(monkeypatch: pytest.MonkeyPatch, names: list[str], local_id: int = 1
              ) -> FakeEtcd:
    etcd = FakeEtcd(names, local_id)
    # The procedures' own name, and the class the health checks import when they run.
    for module in (member_remove, member_add, client):
        monkeypatch.setattr(module, "EtcdClient", etcd)
    return etcd


@pytest.mark.parametrize("name", METACHARACTERS)
def test_member_remove_takes_a_pattern_literally(run_cli, host: Path,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 name: str) -> None:
    etcd = fake_etcd(monkeypatch, MASTERS)
    err = refused(run_cli, host, [*TLS, "member", "remove", name], 3).stderr
    assert f"no etcd member is named {name!r}" in err and ", ".join(MASTERS) in err
    assert etcd.removed == []


def test_the_43_script_name_takes_it_literally_too(host: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    etcd = fake_etcd(monkeypatch, MASTERS)
    monkeypatch.setenv("OCP_RECOVERY_HOST_ROOT", str(host))
    monkeypatch.setenv("OCP_RECOVERY_HOST_EXEC", "direct")
    for variable, value in zip(("ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"), TLS[1::2],
                               strict=True):
        monkeypatch.setenv(variable, value)
    assert legacy.etcd_member_remove(["etcd-member-.*"]) == 3
    assert "no etcd member is named 'etcd-member-.*'" in capsys.readouterr().err
    assert etcd.removed == []


def test_a_member_named_like_a_pattern_is_the_only_one_removed(run_cli, host: Path,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    etcd = fake_etcd(monkeypatch, [*MASTERS, "etcd-member-.*"])
    run_cli(["--host-root", str(host), "--host-exec", "direct", *TLS, "member", "remove",
             "etcd-member-.*", "--yes"])
    assert [m.name for m in etcd.members()] == MASTERS


def test_an_empty_name_is_refused(run_cli, host: Path,  # type: ignore[no-untyped-def]
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    etcd = fake_etcd(monkeypatch, MASTERS)
    assert "a member name is required" in refused(
        run_cli, host, [*TLS, "member", "remove", ""], 3).stderr
    assert etcd.removed == []


@pytest.fixture
def master_with_certificates(host: Path) -> Path:
    """This master's etcd member certificates, valid and from the etcd CA, as `member add`
    requires."""
    ca = certs.self_signed_ca("etcd-signer")
    member_dir = host / "etc/kubernetes/static-pod-resources/etcd-member"
    member_dir.mkdir(parents=True)
    (member_dir / "ca.crt").write_bytes(ca.cert_pem())
    for kind in ("server", "peer"):
        issued = certs.issue(ca, common_name=f"system:etcd-{kind}:{ETCD_DNS}",
                             dns_names=[ETCD_DNS], ip_addresses=[ETCD_IP])
        (member_dir / f"system:etcd-{kind}:{ETCD_DNS}.crt").write_bytes(issued.cert_pem())
        (member_dir / f"system:etcd-{kind}:{ETCD_DNS}.key").write_bytes(issued.key_pem())
    return host


@pytest.mark.parametrize("name", ["etcd-member-master-[0-9]", "etcd-member-.*",
                                  "etcd-member-master-1.*"])
def test_member_add_does_not_take_a_pattern_for_an_existing_member(
        run_cli, master_with_certificates: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        name: str) -> None:
    fake_etcd(monkeypatch, MASTERS, local_id=99)  # etcd does not run here
    out = run_cli(["--host-root", str(master_with_certificates), "--host-exec", "direct",
                   "--log-format", "console", "member", "add", "10.0.0.1", name,
                   "--peer-url", f"https://{ETCD_IP}:2380", "--dry-run"]).stdout
    assert f"add {name} (https://{ETCD_IP}:2380)" in out
    # ... while the exact name of a member is still found:
    assert "etcd-member-master-1 is already in the cluster" in refused(
        run_cli, master_with_certificates,
        ["member", "add", "10.0.0.1", "etcd-member-master-1", "--peer-url",
         f"https://{ETCD_IP}:2380", "--dry-run"], 4).stderr


@pytest.mark.parametrize("name", METACHARACTERS)
def test_restore_name_is_matched_exactly(run_cli, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    root = master_root(tmp_path / "host")
    backup_set(root / "home/core/backup")
    cluster = ",".join(f"{m}=https://10.0.0.{i + 1}:2380" for i, m in enumerate(MASTERS))
    err = refused(run_cli, root, ["restore", "/home/core/backup", "--initial-cluster",
                                  cluster, "--name", name, "--dry-run"], 3).stderr
    assert f"--name {name} is not in INITIAL_CLUSTER ({', '.join(MASTERS)})" in err
