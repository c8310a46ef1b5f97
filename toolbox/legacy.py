"""The 4.3 script names, with their arguments, as thin shims over `ocp-recovery`.

The guide can be followed word for word (`etcd-snapshot-backup.sh /home/core/backup`);
behaviour is the toolbox's (verified snapshot, no partial files, documented exit codes).
A wrong number of arguments prints the 4.3 usage line and exits 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from toolbox import cli
from toolbox.context import initial_cluster_of


def _shim(argv: list[str] | None, usage: str, count: int,
          command: Callable[[list[str]], list[str]]) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != count or not all(args):
        sys.stderr.write(f"usage: {usage}\n")
        code = 2
    else:
        code = cli.run(command(args), prog_name=usage.split()[0])
    if argv is None:
        sys.exit(code)
    return code


def etcd_snapshot_backup(argv: list[str] | None = None) -> int:
    return _shim(argv, "etcd-snapshot-backup.sh <path-to-backup-dir>", 1,
                 lambda a: ["backup", a[0]])


def etcd_snapshot_restore(argv: list[str] | None = None) -> int:
    """INITIAL_CLUSTER may also come from the environment, as the guide exports it."""
    args = sys.argv[1:] if argv is None else argv
    exported = initial_cluster_of(os.environ)
    if len(args) == 1 and exported:
        args = [*args, exported]
    code = _shim(args, "etcd-snapshot-restore.sh <path-to-backup> <INITIAL_CLUSTER>", 2,
                 # 4.3 rewound a healthy cluster unasked (guide 3.3); a restore that would
                 # split one stays refused.
                 lambda a: ["restore", a[0], "--initial-cluster", a[1], "--yes",
                            "--rewind-healthy-cluster"])
    if argv is None:
        sys.exit(code)
    return code


def etcd_member_remove(argv: list[str] | None = None) -> int:
    return _shim(argv, "etcd-member-remove.sh <etcd_name>", 1,
                 lambda a: ["member", "remove", a[0], "--yes"])


def etcd_member_add(argv: list[str] | None = None) -> int:
    return _shim(argv, "etcd-member-add.sh <active_member_IP> <etcd_name>", 2,
                 lambda a: ["member", "add", a[0], a[1], "--yes"])


def etcd_member_recover(argv: list[str] | None = None) -> int:
    """SETUP_ETCD_ENVIRONMENT and KUBE_CLIENT_AGENT may be set, as the guide says; they are
    not needed."""
    return _shim(argv, "etcd-member-recover.sh <RECOVERY_SERVER_IP> <etcd_name>", 2,
                 lambda a: ["member", "recover", a[0], a[1], "--yes"])


def tokenize_signer(argv: list[str] | None = None) -> int:
    """KUBE_ETCD_SIGNER_SERVER, as the guide exports it, names the image."""
    return _shim(argv, "tokenize-signer.sh <MASTER_HOSTNAME>", 1,
                 lambda a: ["signer", "manifest", a[0]])


def recover_kubeconfig(argv: list[str] | None = None) -> int:
    """No arguments; KUBECONFIG (the recovery API server's, in the guide) says which API."""
    return _shim(argv, "recover-kubeconfig.sh", 0, lambda a: ["kubeconfig", "recover"])
