from pathlib import Path

import pytest

from toolbox.errors import InvalidInput
from toolbox.host.paths import HostPaths, resolve_under


def test_absolute_symlink_is_followed_inside_the_host_root(tmp_path: Path) -> None:
    (tmp_path / "var/home/core").mkdir(parents=True)
    (tmp_path / "home").symlink_to("/var/home")  # absolute: must not mean the container's /
    assert resolve_under(tmp_path, "/home/core/backup") == tmp_path / "var/home/core/backup"


def test_relative_symlink_as_on_rhcos(tmp_path: Path) -> None:
    (tmp_path / "var/home").mkdir(parents=True)
    (tmp_path / "home").symlink_to("var/home")
    assert resolve_under(tmp_path, "/home/core") == tmp_path / "var/home/core"


def test_dotdot_never_leaves_the_host_root(tmp_path: Path) -> None:
    assert resolve_under(tmp_path, "/../../etc/passwd") == tmp_path / "etc/passwd"
    (tmp_path / "escape").symlink_to("../../../../")
    assert resolve_under(tmp_path, "/escape/etc") == tmp_path / "etc"


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(InvalidInput, match="too many symlinks"):
        resolve_under(tmp_path, "/a/x")


def test_relative_host_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not an absolute path"):
        resolve_under(tmp_path, "home/core")


def test_revisions_sorted_by_number_not_text(tmp_path: Path) -> None:
    spr = tmp_path / "etc/kubernetes/static-pod-resources"
    for name in ("kube-apiserver-pod-9", "kube-apiserver-pod-10", "kube-apiserver-pod-2",
                 "kube-apiserver-pod-x", "kube-apiserver-certs", "etcd-member"):
        (spr / name).mkdir(parents=True)
    (spr / "kube-apiserver-pod-11").write_text("a file, not a revision")
    names = [d.name for d in HostPaths(tmp_path).kube_apiserver_revisions()]
    assert names == ["kube-apiserver-pod-2", "kube-apiserver-pod-9", "kube-apiserver-pod-10"]


def test_shown_gives_the_hosts_own_name(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    assert paths.shown(tmp_path / "etc/kubernetes") == "/etc/kubernetes"
    assert paths.shown(tmp_path) == "/"
