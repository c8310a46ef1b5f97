"""The 4.3 script names, with their arguments, as thin shims over `ocp-recovery`.

The guide can be followed word for word (`etcd-snapshot-backup.sh /home/core/backup`);
behaviour is the toolbox's (verified snapshot, no partial files, documented exit codes).
"""

from __future__ import annotations

import os
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


def etcd_snapshot_restore(argv: list[str] | None = None) -> int:
    """`etcd-snapshot-restore.sh <path-to-backup> <INITIAL_CLUSTER>` (INITIAL_CLUSTER may
    also come from the environment, as the guide exports it)."""
    args = sys.argv[1:] if argv is None else argv
    cluster = args[1] if len(args) > 1 else os.environ.get("INITIAL_CLUSTER", "")
    if not args or not args[0] or not cluster or len(args) > 2:
        code = _usage("etcd-snapshot-restore.sh <path-to-backup> <INITIAL_CLUSTER>")
    else:
        code = cli.run(["restore", args[0], "--initial-cluster", cluster, "--yes"],
                       prog_name="etcd-snapshot-restore.sh")
    if argv is None:
        sys.exit(code)
    return code


def etcd_member_remove(argv: list[str] | None = None) -> int:
    """`etcd-member-remove.sh <etcd_name>`"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0]:
        code = _usage("etcd-member-remove.sh <etcd_name>")
    else:
        code = cli.run(["member", "remove", args[0]], prog_name="etcd-member-remove.sh")
    if argv is None:
        sys.exit(code)
    return code


def etcd_member_add(argv: list[str] | None = None) -> int:
    """`etcd-member-add.sh <active_member_IP> <etcd_name>`"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not all(args):
        code = _usage("etcd-member-add.sh <active_member_IP> <etcd_name>")
    else:
        code = cli.run(["member", "add", args[0], args[1], "--yes"],
                       prog_name="etcd-member-add.sh")
    if argv is None:
        sys.exit(code)
    return code


def etcd_member_recover(argv: list[str] | None = None) -> int:
    """`etcd-member-recover.sh <RECOVERY_SERVER_IP> <etcd_name>` (SETUP_ETCD_ENVIRONMENT and
    KUBE_CLIENT_AGENT may be set, as the guide says; they are not needed)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not all(args):
        code = _usage("etcd-member-recover.sh <RECOVERY_SERVER_IP> <etcd_name>")
    else:
        code = cli.run(["member", "recover", args[0], args[1], "--yes"],
                       prog_name="etcd-member-recover.sh")
    if argv is None:
        sys.exit(code)
    return code


def tokenize_signer(argv: list[str] | None = None) -> int:
    """`tokenize-signer.sh <MASTER_HOSTNAME>` (KUBE_ETCD_SIGNER_SERVER names the image)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0]:
        code = _usage("tokenize-signer.sh <MASTER_HOSTNAME>")
    else:
        code = cli.run(["signer", "manifest", args[0]], prog_name="tokenize-signer.sh")
    if argv is None:
        sys.exit(code)
    return code
