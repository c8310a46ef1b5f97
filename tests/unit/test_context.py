import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing
from toolbox.context import build_context, parse_endpoints
from toolbox.errors import InvalidInput


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


def test_wait_flags_set_the_timeouts_and_refuse_what_is_not_a_wait(tmp_path: Path) -> None:
    ctx = build_context({}, host_root=str(tmp_path), host_exec="direct", dial_timeout=2,
                        health_timeout=1800)
    assert (ctx.timeouts.dial, ctx.timeouts.health) == (2, 1800)
    assert build_context({}, host_root=str(tmp_path), host_exec="direct").timeouts.health == 300
    for bad in (0, -5, float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match=r"--health-timeout .* above 0"):
            build_context({}, host_root=str(tmp_path), host_exec="direct", health_timeout=bad)
    with pytest.raises(InvalidInput, match="--dial-timeout"):
        build_context({}, host_root=str(tmp_path), host_exec="direct", dial_timeout=0)


def test_proxy_variables_never_reach_children(tmp_path: Path) -> None:
    env = {"OCP_RECOVERY_HOST_ROOT": str(tmp_path), "HTTPS_PROXY": "http://proxy:3128",
           "http_proxy": "http://proxy:3128", "grpc_proxy": "x", "NO_PROXY": "a", "PATH": "/bin"}
    ctx = build_context(env)
    assert set(ctx.child_env) == {"OCP_RECOVERY_HOST_ROOT", "NO_PROXY", "PATH", "ETCDCTL_API"}


def test_host_exec_defaults(tmp_path: Path) -> None:
    assert build_context({"OCP_RECOVERY_HOST_ROOT": "/"}).host_exec == "direct"
    with pytest.raises(InvalidInput):
        build_context({"OCP_RECOVERY_HOST_ROOT": str(tmp_path)}, host_exec="ssh")


# The mode a container gets, built in a child process whose PID and mount namespaces are
# real ones (unshare) laid out as a container's are.
DEFAULT_MODE = ("import sys; from toolbox.context import build_context; "
                "print(build_context({'OCP_RECOVERY_HOST_ROOT': sys.argv[1]}).host_exec)")
OWN_PID_1 = ["unshare", "--pid", "--fork", "--mount-proc"]
# PID 1 stays a shell in the mount namespace it was started in, the child runs in another:
# PID 1 is to it what the host's init is to a --pid=host container.
HOSTS_PID_1 = [*OWN_PID_1, "sh", "-c", 'unshare --mount "$@"; exit $?', "sh"]


@pytest.mark.parametrize(("namespaces", "mode", "warned"), [
    pytest.param(HOSTS_PID_1, "nsenter", False, id="pid-1-is-the-hosts"),
    pytest.param(OWN_PID_1, "chroot", True, id="pid-1-is-the-containers-own"),
])
def test_in_a_container_nsenter_when_pid_1_is_the_hosts_else_chroot_with_a_warning(
        tmp_path: Path, namespaces: list[str], mode: str, warned: bool) -> None:
    if shutil.which("unshare") is None:
        missing("unshare (util-linux)")
    done = subprocess.run([*namespaces, sys.executable, "-c", DEFAULT_MODE, str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    if "unshare failed" in done.stderr or "Operation not permitted" in done.stderr:
        missing(f"PID and mount namespaces ({done.stderr.strip()})")
    assert (done.returncode, done.stdout.strip()) == (0, mode), done.stderr
    assert ("host_exec.fallback" in done.stderr) is warned, done.stderr


def test_missing_host_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a directory"):
        build_context({}, host_root=str(tmp_path / "nope"))


def test_aws_region_reaches_the_s3_client_as_other_aws_sdks_read_it() -> None:
    """boto3 reads only AWS_DEFAULT_REGION; the issue's (and other SDKs') AWS_REGION must
    work too, and AWS_DEFAULT_REGION wins when both are set."""
    from toolbox.store.s3 import Bucket

    ctx = build_context({"AWS_REGION": "eu-west-3"})
    assert ctx.aws_region == "eu-west-3"
    bucket = Bucket.connect("backups", "https://127.0.0.1:1", ctx.aws_region)
    assert bucket._client.meta.region_name == "eu-west-3"
    both = build_context({"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "us-east-2"})
    assert both.aws_region == "us-east-2"
