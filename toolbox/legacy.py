"""The 4.3 script names, with their arguments, as thin shims over `ocp-recovery`.

The guide can be followed word for word (`etcd-snapshot-backup.sh /home/core/backup`);
behaviour is the toolbox's (verified snapshot, no partial files, documented exit codes).
"""

from __future__ import annotations

import sys

from toolbox import cli


def _usage(text: str) -> int:
    sys.stderr.write(f"usage: {text}\n")
    return 2


def etcd_snapshot_backup(argv: list[str] | None = None) -> int:
    """`etcd-snapshot-backup.sh <path-to-backup-dir>`"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0]:
        code = _usage("etcd-snapshot-backup.sh <path-to-backup-dir>")
    else:
        code = cli.run(["backup", args[0]], prog_name="etcd-snapshot-backup.sh")
    if argv is None:
        sys.exit(code)
    return code
