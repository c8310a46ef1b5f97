from pathlib import Path

from toolbox.errors import CommandFailed, InvalidInput, all_error_classes

README = Path(__file__).resolve().parents[2] / "README.md"


def test_exit_codes_are_unique() -> None:
    codes = [c.exit_code for c in all_error_classes()]
    assert len(codes) == len(set(codes))
    assert 0 not in codes and 2 not in codes  # success and usage


def test_render_says_what_state_and_next() -> None:
    text = InvalidInput("DIR is a file", next_step="give a directory").render()
    assert text.splitlines() == ["error: DIR is a file", "state: unchanged: nothing was done",
                                 "next:  give a directory"]


def test_command_failed_keeps_the_stderr_tail() -> None:
    err = CommandFailed(["crictl", "stop", "x"], 1, "a\nb\nc\nd\ne\nf\ng\n")
    assert err.returncode == 1 and "c | d | e | f | g" in err.what and "| b" not in err.what


def test_readme_exit_code_table_is_the_generated_one(run_cli) -> None:  # type: ignore[no-untyped-def]
    table = run_cli(["exit-codes", "--markdown"]).stdout.strip()
    assert table in README.read_text(), "regenerate with: ocp-recovery exit-codes --markdown"
