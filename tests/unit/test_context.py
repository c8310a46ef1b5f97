from pathlib import Path

import pytest

from toolbox.context import build_context, parse_endpoints
from toolbox.errors import InvalidInput
from toolbox.host.exec import pid1_is_the_host


def test_endpoints_get_https_and_keep_order() -> None:
    assert parse_endpoints("10.0.0.1:2379, https://10.0.0.2:2379/") == (
        "https://10.0.0.1:2379", "https://10.0.0.2:2379")


@pytest.mark.parametrize("bad", ["", " , ", "ftp://x:1", "https://x:1/path"])
def test_bad_endpoints_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_endpoints(bad)


def test_flags_override_environment(tmp_path: Path) -> None:
    env = {"OCP_RECOVERY_HOST_ROOT": str(tmp_path), "ETCDCTL_ENDPOINTS": "https://a:2379",
           "ETCDCTL_CACERT": "/env/ca", "OCP_RECOVERY_HOST_EXEC": "chroot"}
    ctx = build_context(env, endpoints="https://b:2379", host_exec="direct")
    assert ctx.etcd.endpoints == ("https://b:2379",)
    assert ctx.etcd.cacert == "/env/ca"
    assert ctx.host_exec == "direct"
    assert ctx.host_root == tmp_path


def test_proxy_variables_never_reach_children(tmp_path: Path) -> None:
    env = {"OCP_RECOVERY_HOST_ROOT": str(tmp_path), "HTTPS_PROXY": "http://proxy:3128",
           "http_proxy": "http://proxy:3128", "grpc_proxy": "x", "NO_PROXY": "a", "PATH": "/bin"}
    ctx = build_context(env)
    assert set(ctx.child_env) == {"OCP_RECOVERY_HOST_ROOT", "NO_PROXY", "PATH", "ETCDCTL_API"}


def test_host_exec_defaults(tmp_path: Path) -> None:
    assert build_context({"OCP_RECOVERY_HOST_ROOT": "/"}).host_exec == "direct"
    # In a container: nsenter into PID 1 when it is the host's, else chroot (warned).
    expected = "nsenter" if pid1_is_the_host() else "chroot"
    assert build_context({"OCP_RECOVERY_HOST_ROOT": str(tmp_path)}).host_exec == expected
    with pytest.raises(InvalidInput):
        build_context({"OCP_RECOVERY_HOST_ROOT": str(tmp_path)}, host_exec="ssh")


def test_missing_host_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a directory"):
        build_context({}, host_root=str(tmp_path / "nope"))
