"""The CLI layer: argument translation and operator-facing output, no etcd needed."""

from pathlib import Path

import pytest

from toolbox.legacy import etcd_snapshot_backup


def test_relative_directory_in_a_container_is_refused(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    err = run_cli(["--host-root", str(tmp_path), "backup", "./assets/backup"],
                  exit_code=3).stderr
    assert "'./assets/backup' is relative, and the working directory is not on the host" in err
    assert "give the absolute host path" in err


def test_a_relative_path_under_the_host_root_is_that_host_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolbox.context import build_context
    from toolbox.host.paths import host_path_argument

    backup = tmp_path / "home/core/backup"
    backup.mkdir(parents=True)
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    monkeypatch.chdir(backup)  # `cd /host/home/core/backup` in the container
    context = build_context({}, host_root=str(tmp_path), host_exec="direct")
    assert host_path_argument("snapshot_x.db", context.host_root) == \
        "/home/core/backup/snapshot_x.db"
    assert host_path_argument(".", context.host_root) == "/home/core/backup"


def test_a_closed_pipe_ends_the_output_not_the_command() -> None:
    import subprocess
    import sys

    done = subprocess.run(f"{Path(sys.executable).parent}/ocp-recovery exit-codes | head -1",
                          shell=True, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["0", "success", "(warnings,", "if", "any,", "are",
                                   "printed)"]
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


@pytest.mark.parametrize(("args", "env", "code"), [
    (["--log-format", "yaml", "exit-codes"], {}, 2),
    (["exit-codes"], {"OCP_RECOVERY_LOG_FORMAT": "yaml"}, 3),
])
def test_a_log_format_that_does_not_exist_is_refused(run_cli, args: list[str],  # type: ignore[no-untyped-def]
                                                    env: dict[str, str], code: int) -> None:
    err = run_cli(args, env=env, exit_code=code).stderr
    assert "yaml" in err and "console" in err and "json" in err


def test_a_path_with_the_host_root_in_front_means_the_host_path(tmp_path: Path) -> None:
    from toolbox.context import build_context
    from toolbox.host.paths import host_path_argument

    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    context = build_context({}, host_root=str(tmp_path), host_exec="direct")
    assert host_path_argument(f"{tmp_path}/home/core/backup", context.host_root) == \
        "/home/core/backup"
    assert host_path_argument("/home/core/backup", context.host_root) == "/home/core/backup"


def test_legacy_backup_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert etcd_snapshot_backup([]) == 2
    assert "usage: etcd-snapshot-backup.sh <path-to-backup-dir>" in capsys.readouterr().err


def test_version(run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(["--version"]).stdout.startswith("ocp-recovery ")


def test_unknown_command_is_a_usage_error(run_cli) -> None:  # type: ignore[no-untyped-def]
    err = run_cli(["restore-everything"], exit_code=2).stderr
    assert err.endswith("state: unchanged: nothing was done\nnext: ocp-recovery --help\n"), err


def test_every_command_says_what_it_does_and_explains_each_option(run_cli) -> None:  # type: ignore[no-untyped-def]
    """`ocp-recovery [GROUP] NAME --help` shows the command's whole docstring and each of its
    options and arguments with its explanation: none undocumented, none hidden."""
    import inspect

    import typer

    from toolbox.commands.app import build_app

    def squeezed(text: str) -> str:  # the help rewraps text, breaking lines at hyphens too
        return "".join(text.split())

    def leaves(group: typer.Typer, words: list[str]) -> list[tuple[list[str], object]]:
        found = [([*words, c.name or ""], c.callback) for c in group.registered_commands]
        for sub in group.registered_groups:
            found += leaves(sub.typer_instance, [*words, sub.name or ""])
        return found

    commands = leaves(build_app(), [])
    assert len(commands) >= 30
    for words, callback in commands:
        out = squeezed(run_cli([*words, "--help"]).stdout)
        doc = inspect.cleandoc(getattr(callback, "__doc__", "") or "")
        assert doc and squeezed(doc) in out, f"{words}: the help lacks what the command does"
        for parameter in inspect.signature(callback).parameters.values():  # type: ignore[arg-type]
            info = getattr(parameter.annotation, "__metadata__", [None])[0]
            if info is None:  # the typer context
                continue
            assert info.help and squeezed(info.help) in out, \
                f"{words}: {parameter.name} is not explained in the help"


def test_no_command_prints_the_commands_and_exits_2(run_cli) -> None:  # type: ignore[no-untyped-def]
    outcome = run_cli([], exit_code=2)
    out = outcome.stdout + outcome.stderr
    assert "backup" in out and "restore" in out and "exit-codes" in out


def test_a_group_without_its_command_is_a_usage_error(run_cli) -> None:  # type: ignore[no-untyped-def]
    out = run_cli(["member"], exit_code=2)
    assert "remove" in out.stdout + out.stderr and "add" in out.stdout + out.stderr


def test_backup_without_its_directory_says_the_directory_is_missing(run_cli) -> None:  # type: ignore[no-untyped-def]
    err = run_cli(["backup"], exit_code=2).stderr
    assert "Missing argument 'DIR'" in err, err
    assert "Usage: ocp-recovery backup [OPTIONS] DIR | COMMAND [ARGS]..." in err, err
    assert err.endswith("state: unchanged: nothing was done\nnext: ocp-recovery backup --help\n")


@pytest.mark.parametrize(("args", "helped"), [
    (["backup", "/home/core/backup", "--keep"], "ocp-recovery backup take"),
    (["restore", "/home/core/backup", "--initial-cluster"], "ocp-recovery restore"),
    (["--host-root", "/host", "member", "add", "10.0.0.5", "--dial-timeout"],
     "ocp-recovery member add"),
])
def test_an_option_without_its_value_points_at_that_commands_help(  # type: ignore[no-untyped-def]
        run_cli, args: list[str], helped: str) -> None:
    err = run_cli(args, exit_code=2).stderr
    assert f"Option '{args[-1]}' requires an argument." in err, err
    assert err.endswith(f"next: {helped} --help\n"), err


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_work_before_and_after_the_command(run_cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          where: str) -> None:
    """`status --host-root X --json` and `--host-root X --json status` are the same."""
    import json

    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    options = ["--host-root", str(tmp_path), "--host-exec", "direct", "--state-dir",
               "/var/lib/ocp-recovery", "--json"]
    args = [*options, "status"] if where == "before" else ["status", *options]
    result = json.loads(run_cli(args).stdout)
    assert result["event"] == "status" and result["next"] == []
    assert result["summary"] == "no journaled operation has run on this host"


def test_an_abbreviated_option_is_refused_not_guessed(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--ke 1` was once taken as `--keep 1` and pruned all but one backup."""
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    err = run_cli(["--host-root", str(tmp_path), "backup", "/home/core/backup", "--ke", "1"],
                  exit_code=2).stderr
    assert "No such option: --ke" in err
    assert "next: ocp-recovery backup take --help" in err  # the help that lists --keep
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(("answer", "goes_on"), [("y", True), ("yes", True), ("", False),
                                                 ("n", False), (None, False)])
def test_the_confirmation_on_a_terminal(answer: str | None, goes_on: bool, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Only a yes goes on; anything else (or end of input) stops with its own exit code (not
    130, which is Ctrl-C) and no suggestion of --yes; the operator saw every change first."""
    import dataclasses
    import io

    from toolbox.commands.common import GlobalOptions, confirm
    from toolbox.context import build_context
    from toolbox.errors import NotConfirmed
    from toolbox.journal import Confirmation

    # What the operator types, or end of input (None).
    monkeypatch.setattr("sys.stdin", io.StringIO("" if answer is None else answer + "\n"))
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    context = dataclasses.replace(build_context({}, host_root=str(tmp_path),
                                                host_exec="direct"), stdin_is_terminal=True)

    def ask() -> bool:
        return confirm(GlobalOptions(), context, Confirmation("restore", "Restore?"),
                       ["1. stop etcd"], [], dry_run=False, yes=False)

    if goes_on:
        assert ask() is True
    else:
        with pytest.raises(NotConfirmed) as refused:
            ask()
        rendered = refused.value.render()
        assert refused.value.exit_code == 15 and "nothing was done" in rendered
        assert "--yes" not in rendered
    assert "1. stop etcd" in capsys.readouterr().out


def test_with_json_an_error_is_a_json_object_on_stdout_too(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A script reading `--json` output learns what failed, the host's state and what next;
    the three lines stay on stderr for a person."""
    import json

    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    outcome = run_cli(["backup", "/home/core/backup", "--host-root", str(tmp_path),
                       "--host-exec", "direct", "--json"], exit_code=4)
    error = json.loads(outcome.stdout)
    assert error["event"] == "error" and error["exit_code"] == 4
    assert "no kube-apiserver-pod-N directory" in error["summary"]
    assert error["next"] and error["state"]
    assert outcome.stderr.startswith("error: no kube-apiserver-pod-N directory")


def kubelet_reset_journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A kubelet-reset's journal on a host root in tmp_path, no step run yet: (ctx, journal)."""
    from toolbox.context import build_context
    from toolbox.journal import Journal
    from toolbox.procedures import kubelet

    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    ctx = build_context({}, host_root=str(tmp_path), host_exec="direct",
                        state_dir="/var/lib/ocp-recovery")
    plan = kubelet.ResetPlan("kubelet-reset-1", (), "20261201T000000Z", {
        "pki": ["/var/lib/kubelet/pki", "/var/lib/kubelet/pki.ocp-recovery-20261201T000000Z"]})
    return ctx, Journal.begin(ctx.paths.state_dir, "kubelet-reset", plan.record(),
                              [s.name for s in kubelet.PROCEDURE.steps(ctx, plan)])


def test_rollback_says_what_it_undoes_and_leaves_out_waits(tmp_path: Path) -> None:
    """The rollback's question lists the undo of each step done, newest first, naming what
    that step did; a wait, which changed nothing, is not in it."""
    from toolbox.procedures import inflight

    ctx, journal = kubelet_reset_journal(tmp_path)
    for name in ("stop-kubelet", "move-aside", "start-kubelet", "wait-kubelet-active"):
        journal.mark(name, "done")
    journal.set_status("done")
    confirmation, lines = inflight.rollback_preview(ctx)
    assert confirmation.title == "rollback of the finished kubelet-reset kubelet-reset-1"
    assert [line.split(" (")[0] for line in lines] == [
        " 1. undo start-kubelet", " 2. undo move-aside", " 3. undo stop-kubelet"]
    assert "(which did: move /var/lib/kubelet/pki to" in lines[1]


def test_resume_dry_run_lists_the_steps_left_and_runs_none(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Killed inside move-aside: `resume --dry-run` names that step and the ones after it,
    in order, and leaves the journal as it was."""
    from toolbox.journal import Journal

    ctx, journal = kubelet_reset_journal(tmp_path)
    journal.mark("stop-kubelet", "done")
    journal.mark("move-aside", "running")
    journal_file = Journal.path_in(ctx.paths.state_dir)
    before = journal_file.read_bytes()
    out = run_cli(["--host-root", str(tmp_path), "--host-exec", "direct", "resume",
                   "--dry-run"]).stdout
    assert "resume of the part-way kubelet-reset kubelet-reset-1" in out, out
    listed = [line.split(":")[0] for line in out.splitlines() if line[:3].strip().endswith(".")]
    assert listed == [" 1. move-aside", " 2. start-kubelet", " 3. wait-kubelet-active"], out
    assert "dry run: nothing was done" in out
    assert journal_file.read_bytes() == before


def test_ctrl_c_in_a_command_says_what_was_interrupted(run_cli, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """typer turns Ctrl-C into a silent Exit(130): the operator must still be told."""
    from toolbox.procedures import backup_list

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(backup_list, "run", interrupted)
    out = run_cli(["backup", "ls", "/var/tmp"], exit_code=130)
    assert "error: interrupted (Ctrl-C)" in out.stderr
    assert "run the same command again" in out.stderr


def test_a_closed_log_reader_does_not_stop_the_work(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`… 2>&1 | head -1`: the log's reader leaves after one line; the command goes on and
    its outcome (here: the identity file written, exit 0) is as without the pipe."""
    import subprocess
    import sys

    identity = tmp_path / "id.txt"
    code = ("import sys; from toolbox import cli, log\n"
            "log.configure('json')\n"
            "log.get('t').info('first')\n"
            "sys.stderr.close()\n"  # what a reader that left does to the next write
            "import os; os.close(2); r, w = os.pipe(); os.close(r); os.dup2(w, 2)\n"
            "sys.stderr = open(2, 'w')\n"
            "log.get('t').info('second')\n"
            f"sys.exit(cli.run(['--host-exec', 'direct', 'backup', 'keygen', '{identity}']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert identity.read_text().startswith("# public key: age1")


def test_the_health_timeout_help_gives_what_the_waits_add_per_gib() -> None:
    """The help is built before any context (so it cannot import the scaling): it must
    state the same per-GiB allowance the waits use."""
    import re
    import typing

    from toolbox.commands.common import GlobalOptions
    from toolbox.context import SCALED_SECONDS_PER_GIB

    option = typing.get_type_hints(GlobalOptions, include_extras=True)["health_timeout"]
    stated = re.search(r"adds (\d+) s per GiB", option.__metadata__[0].help)
    assert stated and int(stated.group(1)) == round(SCALED_SECONDS_PER_GIB)
