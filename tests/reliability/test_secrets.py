"""Secrets hygiene over a whole drill: no private key or signer token in any log line or
message; files holding keys are 0600; the journal never holds a token. (The expired-certs
drill's logs are scanned for keys and service-account tokens in tests/e2e/test_cert_drill.)"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from tests.conftest import require_etcd
from toolbox.procedures import signer

pytestmark = pytest.mark.timeout(900)
CANARY = "canary-signer-token-Zq7"
PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def _keys_are_private(root: Path) -> list[str]:
    loose = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        holds_key = path.suffix == ".key" or PEM_PRIVATE.search(path.read_text(errors="ignore"))
        if holds_key and mode & 0o077:
            loose.append(f"{path} {oct(mode)}")
    return loose


@pytest.mark.fault("secrets")
def test_replace_master_drill_leaks_no_key_and_no_token(run_cli, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    require_etcd("3.5")
    monkeypatch.setattr(signer, "new_token", lambda: CANARY)
    out = run_cli(["-v", "drill", "replace-master", "--keys", "100", "--dir", str(tmp_path),
                   "--keep-sandbox"])
    try:
        logs = out.stdout + out.stderr
        assert "step.done" in logs  # the debug and step logs were captured
        assert CANARY not in logs and not PEM_PRIVATE.search(logs)
        masters = tmp_path / "sandbox/masters"
        for journal in masters.rglob("var/lib/ocp-recovery/**/*.json"):
            assert CANARY not in journal.read_text(), journal
        assert _keys_are_private(masters) == []
    finally:
        run_cli(["sandbox", "down", "--dir", str(tmp_path / "sandbox")])

