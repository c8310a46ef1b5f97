"""Shared fixtures: the CLI run in-process with an expected exit code, sandboxes for each
etcd version, and a tree fingerprint to prove a refused run changed nothing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from toolbox import cli, log
from toolbox.errors import PreconditionFailed
from toolbox.sandbox.binaries import find_etcd, find_kube_apiserver, find_kube_controller_manager
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.objectstore import PACKAGES, ObjectStore, missing_binaries

# pytest imports this file as `conftest`, the test helpers as `tests.conftest`: one module
# for both, so that they share its state (the running test) and classes.
sys.modules.setdefault("tests.conftest", sys.modules[__name__])
IN_CI = os.environ.get("CI") == "true"
log.configure("console")
# 3.5.16 (Debian trixie) is the one whose etcdutl bumps the revision on restore.
ETCD_VERSIONS = ("3.4", "3.5", "3.5.16")


def missing(what: str) -> NoReturn:
    """A missing dependency fails in CI (a broken test environment) and skips elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not available here")


def require_kube_apiserver() -> Path:
    binary = find_kube_apiserver()
    if binary is None:
        missing("kube-apiserver v1.20+ (bash scripts/build-kubernetes.sh builds it)")
    return binary


def require_kube_controller_manager() -> Path:
    binary = find_kube_controller_manager()
    if binary is None:
        missing("kube-controller-manager v1.20+ (bash scripts/build-kubernetes.sh builds it)")
    return binary


def require_etcd(version: str) -> None:
    try:
        find_etcd(version)
    except PreconditionFailed as exc:
        missing(f"etcd {version} ({exc.what})")


@contextlib.contextmanager
def one_master(directory: Path, *, keys: int, prefix: str) -> Iterator[Sandbox]:
    """A 1-master etcd 3.5 sandbox holding `keys` keys under `prefix`, down afterwards."""
    from toolbox.sandbox import workload

    require_etcd("3.5")
    sandbox = Sandbox.up(directory, masters=1, etcd="3.5")
    try:
        with workload.kv_client(sandbox, 0) as kv:
            workload.write(kv, prefix, keys)
        yield sandbox
    finally:
        sandbox.down()


def require_ceph() -> None:
    absent = missing_binaries()
    if absent:
        missing(f"Ceph for the object store ({', '.join(absent)}: apt-get install "
                f"--no-install-recommends {PACKAGES})")


# Not the sandbox's 127.0.0.9: a test may start a sandbox with its object store meanwhile.
SESSION_STORE_IP = "127.0.0.8"


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """One real S3 store (Ceph RADOS Gateway on memstore) for the whole session."""
    require_ceph()
    store = ObjectStore.up(tmp_path_factory.mktemp("object-store"), SESSION_STORE_IP)
    yield store
    store.stop()


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """run_cli(args, env=..., exit_code=0) -> Outcome; the real CLI, in this process
    (exit_code=None: any code, the test looks at it)."""

    def invoke(args: list[str], *, env: dict[str, str] | None = None,
               exit_code: int | None = 0) -> Outcome:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        code = cli.run(args)
        out, err = capsys.readouterr()
        assert exit_code is None or code == exit_code, \
            f"exit {code} != {exit_code}\nstdout:\n{out}\nstderr:\n{err}"
        return Outcome(code, out, err)

    return invoke


@pytest.fixture(scope="module", params=ETCD_VERSIONS)
def sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Sandbox]:
    """A 3-master sandbox per module and etcd version (one at a time: fixed addresses)."""
    require_etcd(request.param)
    sb = Sandbox.up(tmp_path_factory.mktemp(f"sandbox-{request.param}"), masters=3,
                    etcd=request.param)
    yield sb
    sb.down()


def tree_fingerprint(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Path -> mode, owner and content hash (or link target) of everything under `root`."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames
                       if os.path.normpath(os.path.join(rel_dir, d)) not in ignore]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                detail = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                detail = "dir"
            result[rel] = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid} {detail}"
    return result


SCORECARD_KINDS = ("fault", "hostile")
# The test being run, so that assert_host_unchanged can record on it what it proved.
_running: list[pytest.Item] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A reliability test's id and markers go into its junit XML properties, which the
    scorecard (tests/reliability/scorecard.py) reads back from a real run."""
    for item in items:
        marks = [m for m in map(item.get_closest_marker, SCORECARD_KINDS) if m is not None]
        if marks:
            item.user_properties.append(("nodeid", item.nodeid))
            item.user_properties.extend((m.name, str(m.args[0])) for m in marks)


@contextlib.contextmanager
def assert_host_unchanged(root: Path, ignore: tuple[str, ...] = ()) -> Iterator[None]:
    """The block must leave every file under `root` (but `ignore`) exactly as it was: mode,
    owner, content, link target. Says which paths changed; when none did, records on the
    test a `host_unchanged` property (what was not compared) for the scorecard."""
    before = tree_fingerprint(root, ignore)
    yield
    after = tree_fingerprint(root, ignore)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"the host changed under {root}: {changed[:20]}"
    if _running:
        _running[-1].user_properties.append(("host_unchanged", ",".join(ignore)))


@pytest.fixture
def mount_tmpfs():  # type: ignore[no-untyped-def]
    """mount_tmpfs(path, size="1m", read_only=False): a real small or read-only filesystem."""
    import subprocess

    mounted: list[Path] = []

    def mount(path: Path, size: str = "1m", read_only: bool = False) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            missing(f"a tmpfs mount ({done.stderr.strip()})")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)
