"""The CLI layer: argument translation and operator-facing output, no etcd needed."""

from pathlib import Path

import pytest

from toolbox.etcd.snapshot import ProgressLine
from toolbox.legacy import etcd_snapshot_backup


def test_relative_directory_in_a_container_is_refused(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    err = run_cli(["--host-root", str(tmp_path), "backup", "./assets/backup"],
                  exit_code=3).stderr
    assert "'./assets/backup' is relative, and the working directory is not on the host" in err
    assert "give the absolute host path" in err


def test_a_relative_path_under_the_host_root_is_that_host_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolbox.cli import _host_path_argument
    from toolbox.context import build_context

    backup = tmp_path / "home/core/backup"
    backup.mkdir(parents=True)
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    monkeypatch.chdir(backup)  # `cd /host/home/core/backup` in the container
    context = build_context({}, host_root=str(tmp_path), host_exec="direct")
    assert _host_path_argument("snapshot_x.db", context) == "/home/core/backup/snapshot_x.db"
    assert _host_path_argument(".", context) == "/home/core/backup"


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
    from toolbox.cli import _host_path_argument
    from toolbox.context import build_context

    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    context = build_context({}, host_root=str(tmp_path), host_exec="direct")
    assert _host_path_argument(f"{tmp_path}/home/core/backup", context) == "/home/core/backup"
    assert _host_path_argument("/home/core/backup", context) == "/home/core/backup"


def test_legacy_backup_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert etcd_snapshot_backup([]) == 2
    assert "usage: etcd-snapshot-backup.sh <path-to-backup-dir>" in capsys.readouterr().err


def test_version(run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(["--version"]).stdout.startswith("ocp-recovery ")


def test_unknown_command_is_a_usage_error(run_cli) -> None:  # type: ignore[no-untyped-def]
    run_cli(["restore-everything"], exit_code=2)


def test_progress_line_shows_share_and_rate(capsys: pytest.CaptureFixture[str]) -> None:
    line = ProgressLine("snapshot")
    line.last = -1.0  # draw now
    line(512 << 20, 1024 << 20)
    line.close()
    err = capsys.readouterr().err
    assert err.startswith("\rsnapshot  50.0% 512.0 MiB at ") and err.endswith("\n")


def test_every_command_says_what_it_does_and_explains_each_option(run_cli) -> None:  # type: ignore[no-untyped-def]
    """`ocp-recovery [GROUP] NAME --help` shows the command's whole docstring and each of its
    options with its explanation: none undocumented, none hidden."""
    import inspect

    from toolbox.cli import COMMANDS

    def squeezed(text: str) -> str:  # argparse rewraps text, breaking lines at hyphens too
        return "".join(text.split())

    for group, name, params, handler in COMMANDS:
        words = [group, name] if group else [name]
        out = squeezed(run_cli([*words, "--help"]).stdout)
        doc = inspect.cleandoc(handler.__doc__ or "")
        assert doc and squeezed(doc) in out, f"{words}: the help lacks what the command does"
        for param in params:
            explained = param.spec.get("help") or ""
            shown = [flag for flag in param.flags if flag.startswith("-")] or \
                [param.spec.get("metavar") or param.flags[0]]
            assert explained and all(squeezed(f) in out for f in [*shown, explained]), \
                f"{words}: {param.flags[0]} is not explained in the help"


def test_no_command_prints_the_commands_and_exits_2(run_cli) -> None:  # type: ignore[no-untyped-def]
    out = run_cli([], exit_code=2).stdout
    assert "backup" in out and "restore" in out and "exit-codes" in out


def test_a_group_without_its_command_is_a_usage_error(run_cli) -> None:  # type: ignore[no-untyped-def]
    assert "required: COMMAND" in run_cli(["member"], exit_code=2).stderr


def test_an_option_after_the_command_is_not_a_global_one(run_cli) -> None:  # type: ignore[no-untyped-def]
    assert "unrecognized arguments: --host-root" in run_cli(
        ["status", "--host-root", "/"], exit_code=2).stderr


@pytest.mark.parametrize(("answer", "goes_on"), [("y", True), ("yes", True), ("", False),
                                                 ("n", False), (None, False)])
def test_the_confirmation_on_a_terminal(answer: str | None, goes_on: bool, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Only a yes goes on; anything else (or end of input) stops with exit 130, and the
    operator saw every change before answering."""
    import dataclasses
    import io

    from toolbox.cli import _show_plan
    from toolbox.context import build_context
    from toolbox.errors import Interrupted

    # What the operator types, or end of input (None).
    monkeypatch.setattr("sys.stdin", io.StringIO("" if answer is None else answer + "\n"))
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    context = dataclasses.replace(build_context({}, host_root=str(tmp_path),
                                                host_exec="direct"), stdin_is_terminal=True)

    def show() -> bool:
        return _show_plan(context, "restore", ["1. stop etcd"], [], False, False, "Restore?")

    if goes_on:
        assert show() is False
    else:
        with pytest.raises(Interrupted) as refused:
            show()
        assert refused.value.exit_code == 130 and "nothing was changed" in refused.value.render()
    assert "1. stop etcd" in capsys.readouterr().out
