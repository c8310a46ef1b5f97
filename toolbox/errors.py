"""Expected failures. Each class carries its exit code; only `cli.main` turns one into an
exit status. A message says what failed, the state the host is in now, and what to type next.
"""

from __future__ import annotations


class RecoveryError(Exception):
    """Base of every failure the operator can act on (no traceback is shown for these)."""

    exit_code = 1
    summary = "unexpected failure (a bug): the traceback is printed; please report it"
    default_state = "unknown: inspect the host before acting"
    default_next = "run `ocp-recovery status`; report the message above if it is not clear"

    def __init__(self, what: str, *, state: str | None = None, next_step: str | None = None):
        super().__init__(what)
        self.what = what
        self.state = state or self.default_state
        self.next_step = next_step or self.default_next

    def render(self) -> str:
        lines = [f"error: {self.what}", f"state: {self.state}"]
        if self.next_step:
            lines.append(f"next:  {self.next_step}")
        return "\n".join(lines)


class InvalidInput(RecoveryError):
    exit_code = 3
    summary = "an argument, file or variable is invalid; nothing was changed"
    default_state = "unchanged: nothing was done"
    default_next = "correct it and run the same command again"


class PreconditionFailed(RecoveryError):
    exit_code = 4
    summary = "the host is not in a state the procedure can start from; nothing was changed"
    default_state = "unchanged: nothing was done"
    default_next = "bring the host to the state named above, then run the same command again"


class EtcdUnavailable(RecoveryError):
    exit_code = 5
    summary = "no etcd endpoint answered, or TLS was refused"
    default_state = "unchanged: nothing was done"
    default_next = ("check etcd on this master (`crictl ps --name etcd-member`) or pass "
                    "--endpoints of a healthy member")


class IntegrityError(RecoveryError):
    exit_code = 6
    summary = "a snapshot or archive failed its integrity check"
    default_state = "unchanged: the file was only read"
    default_next = "use another backup; keep this file for analysis"


class InsufficientSpace(RecoveryError):
    exit_code = 7
    summary = "not enough free disk space"
    default_state = "unchanged: nothing was written"
    default_next = "free space there or choose another directory, then run the same command"


class CommandFailed(RecoveryError):
    """A host or tool command exited non-zero; keeps argv, rc and stderr for the message."""

    exit_code = 8
    summary = "a command on the host failed"
    default_next = "fix what the command's error says, then run the same command again"

    def __init__(
        self,
        argv: list[str],
        returncode: int,
        stderr: str,
        *,
        state: str | None = None,
        next_step: str | None = None,
    ):
        tail = stderr.strip().splitlines()[-5:]
        detail = ("; stderr: " + " | ".join(tail)) if tail else ""
        super().__init__(
            f"`{' '.join(argv)}` exited with {returncode}{detail}",
            state=state,
            next_step=next_step,
        )
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class WaitTimedOut(RecoveryError):
    exit_code = 9
    summary = "a wait ran past its timeout"
    default_next = "check what it waited for, then run the same command again"


class OperationInFlight(RecoveryError):
    exit_code = 10
    summary = "another ocp-recovery operation holds this host's lock"
    default_state = "unchanged by this run; the other operation may still be changing the host"
    default_next = "ocp-recovery status"


class StepFailed(RecoveryError):
    """A step of a journaled procedure failed: the host is part-way."""

    exit_code = 11
    summary = "a step failed part-way; the host is changed: `resume` or `rollback`"


class ApiUnavailable(RecoveryError):
    exit_code = 12
    summary = "the Kubernetes API did not answer, refused TLS or our credentials, or a request"
    default_state = "unchanged by the failed request"
    default_next = ("check the API server the kubeconfig names (for expired certificates: "
                    "`ocp-recovery recovery-apiserver create`), then run the same command")


class CertificatesExpiring(RecoveryError):
    exit_code = 13
    summary = "`certs report` found a certificate that expires within --warn-days"
    default_state = "unchanged: the report only reads"
    default_next = ("plan the rotation now; for expired control-plane certificates follow "
                    "`ocp-recovery recovery-apiserver create` and `regenerate-certificates`")


class HostIOError(RecoveryError):
    exit_code = 14
    summary = "a file on the host could not be read or written (I/O error, read-only file system)"
    default_next = ("check the disk and the file system (`dmesg`, `mount`), then run the same "
                    "command again")


class NotConfirmed(RecoveryError):
    """The operator answered no to the confirmation."""
    exit_code = 15
    summary = "the confirmation was declined; nothing was changed"


class ObjectStoreError(RecoveryError):
    """The object store could not be reached, refused the request or its certificate."""
    exit_code = 16
    summary = ("the object store (S3) was unreachable, untrusted or refused the request "
               "(credentials, bucket, Object Lock)")
    default_state = "the local backup files are unchanged; no complete set was added to the store"
    default_next = ("check AWS_ENDPOINT_URL/--endpoint-url, the credentials (AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY or AWS_PROFILE), AWS_CA_BUNDLE and the bucket name, "
                    "then run the same command again")


class BackupStale(RecoveryError):
    """The exit status of `backup status` when not fresh. Not raised: its report (one line,
    or one JSON object with "fresh": false and "reason": "stale" or "none", that a
    monitoring script reads whole) is already the message, and says what to run."""
    exit_code = 17
    summary = "`backup status`: no verified backup newer than --max-age (stale, or none)"


class DrillFailed(RecoveryError):
    exit_code = 20
    summary = "a drill's check failed: the procedure did not give the expected outcome"
    default_state = "the sandbox is kept for inspection"
    default_next = "read the sandbox logs (masters/master-N/logs) under the drill directory"


class Interrupted(RecoveryError):
    exit_code = 130
    summary = "interrupted by the operator (Ctrl-C / SIGTERM)"
    default_next = "ocp-recovery status (then resume or rollback if a change was under way)"


def all_error_classes() -> list[type[RecoveryError]]:
    """Every exit-coded class, for the README's generated exit-code table."""
    seen: list[type[RecoveryError]] = []
    todo: list[type[RecoveryError]] = [RecoveryError]
    while todo:
        cls = todo.pop(0)
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: c.exit_code)
