"""The sandbox's own words for chapter 2 work as typed: `sandbox add-master` names the new
master for `signer serve --expect` and `member recover`, the signer's CA files are host paths
on the survivor, the signer's `next:` line recovers the new master, and the README shows the
same commands. One 3-master sandbox for the module; the last test takes quorum away."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import require_etcd
from tests.e2e.helpers import BIN, REPO
from toolbox.sandbox.cluster import NO_QUORUM, Sandbox

CA_FILES = ["--ca-cert", "/root/signer/etcd_ca.crt", "--ca-key", "/root/signer/etcd_ca.key",
            "--metric-ca-cert", "/root/signer/metric_ca.crt",
            "--metric-ca-key", "/root/signer/metric_ca.key"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_etcd("3.5")
    sb = Sandbox.up(tmp_path_factory.mktemp("signer-sandbox"), masters=3, etcd="3.5")
    yield sb
    sb.down()


def readme_commands() -> str:
    """The README with each command on one line (continuations joined, spaces collapsed)."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    return re.sub(r"[ \t]+", " ", text)


def test_env_of_a_master_the_sandbox_lacks_is_refused(run_cli, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    refused = run_cli(["sandbox", "env", "9", "--dir", str(sandbox.dir)], exit_code=3)
    assert f"the sandbox in {sandbox.dir} has no master-9 (its masters: 0, 1, 2)" in \
        refused.stderr
    assert refused.stdout == "", "nothing for `eval` to run"


def test_signer_ca_files_are_host_paths_of_the_survivor(run_cli, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    on_master_0 = sandbox.env_vars(0, dict(os.environ))
    outside = sandbox.dir / "pki/etcd_ca.crt"  # the sandbox's own copy, on no master
    args = ["signer", "serve", "--expect", "etcd-3.sandbox.ocp4.test", *CA_FILES]
    refused = run_cli([*args, "--ca-cert", str(outside)], env=on_master_0, exit_code=3)
    root = sandbox.root(0)
    assert f"error: cannot read --ca-cert {outside} (a host path: looked for {root}{outside}, " \
        f"under the host root {root}): No such file or directory" in refused.stderr
    # The same file named by its local path under the host root is that host path.
    served = run_cli([*args, "--ca-cert", f"{root}/root/signer/etcd_ca.crt", "--deadline", "1"],
                     env=on_master_0, exit_code=9)
    assert served.stdout.startswith("signer on https://127.0.0.11:9943 for "
                                    "etcd-3.sandbox.ocp4.test\n"), served.stdout
    assert "did not get all their certificates" in served.stderr


def test_an_added_master_is_recovered_by_the_commands_printed(run_cli, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    added = run_cli(["sandbox", "add-master", "--dir", str(sandbox.dir)]).stdout.splitlines()
    assert added[0] == "master-3 added on 127.0.0.14: etcd DNS name etcd-3.sandbox.ocp4.test " \
        "(for `signer serve --expect`), member name etcd-member-master-3"
    serve_hint, recover_hint = (line.removeprefix("next: ") for line in added[1:])
    serve = serve_hint[serve_hint.index("ocp-recovery signer serve"):]
    assert serve_hint.startswith(f"on master-0 (`eval \"$(ocp-recovery sandbox env 0 --dir "
                                 f"{sandbox.dir})\"`)"), serve_hint
    assert serve == f"ocp-recovery signer serve --expect etcd-3.sandbox.ocp4.test " \
        f"{shlex.join(CA_FILES)}"
    recover = recover_hint[recover_hint.index("ocp-recovery member recover"):]
    assert recover == "ocp-recovery member recover 127.0.0.11 etcd-member-master-3"
    readme = readme_commands()
    assert serve in readme and recover in readme, "the README shows other commands"

    signer = subprocess.Popen([str(BIN / "ocp-recovery"), *shlex.split(serve)[1:]],
                              env=sandbox.env_vars(0, dict(os.environ)), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        said = [signer.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        assert said[1].startswith("token: ") and said[2].startswith("next: "), said
        token = said[1].removeprefix("token: ").strip()
        told = said[2].removeprefix("next: ").strip()
        assert told.startswith("on each new master, one at a time: "), told
        typed = told.split(": ", 1)[1].replace("<the token above>", token) \
            .replace("<its node name>", "master-3")
        assert typed.endswith(f"; {recover}"), typed  # the signer and add-master agree
        # Typed on master-3, as is (--yes: no terminal to confirm on).
        on_master_3 = sandbox.env_vars(3, dict(os.environ))
        on_master_3["PATH"] += f":{BIN}"
        recovered = subprocess.run(["bash", "-c", f"{typed} --yes"], capture_output=True,
                                   text=True, timeout=180, env=on_master_3)
        assert recovered.returncode == 0, recovered.stderr
        out, err = signer.communicate(timeout=60)
    finally:
        signer.kill()
        signer.wait()
    assert signer.returncode == 0, err
    assert "signer done: every expected member has its certificates" in out
    with sandbox.client(0) as client:
        assert "etcd-member-master-3" in [m.name for m in client.members()]
    sandbox.wait_healthy([3], 60)


def test_status_calls_no_member_without_quorum_healthy(run_cli, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    for index in sandbox.masters[1:]:
        sandbox.stop_master(index)  # master-0 alone is no majority

    def master_0() -> str:
        status = run_cli(["sandbox", "status", "--dir", str(sandbox.dir), "--json"]).stdout
        return str(json.loads(status)["masters"][0]["etcd"])

    # At once: etcd's own leader field still names a leader for a second or two.
    assert master_0() == NO_QUORUM
    console = run_cli(["sandbox", "status", "--dir", str(sandbox.dir)]).stdout
    assert f"\nmaster-0  127.0.0.11  agent up   etcd {NO_QUORUM}\n" in console, console
