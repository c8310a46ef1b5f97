"""age encryption of a backup's files (pyrage): the recipients an upload encrypts to, the
identity a fetch decrypts with, and streams that hash what passes through them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from toolbox.errors import IntegrityError, InvalidInput

AGE_SUFFIX = ".age"


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class Recipients:
    keys: tuple[Any, ...]       # pyrage x25519/ssh Recipient objects
    shown: tuple[str, ...]      # as the operator wrote them: recorded in the manifest


def parse_recipients(given: Sequence[str], files: Sequence[Path], shown_files: Sequence[str]
                     ) -> Recipients:
    """age1… and ssh-ed25519/ssh-rsa public keys, given one by one or a file of them, one per
    line (blank lines and # comments skipped), as `age -R` reads them."""
    from pyrage import ssh, x25519

    lines = [(text.strip(), "--recipient") for text in given]
    for path, shown in zip(files, shown_files, strict=True):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the recipients file {shown}: {exc}",
                               next_step="give a file of age1… or ssh-… public keys, one "
                               "per line") from exc
        lines += [(line.strip(), f"{shown} line {n}") for n, line in
                  enumerate(text.splitlines(), 1) if line.strip() and
                  not line.lstrip().startswith("#")]
    if not lines:
        raise InvalidInput(
            "no recipient to encrypt to: every uploaded object is encrypted, and the "
            "static-resources archive holds the etcd encryption keys",
            next_step="add --recipient age1… (from `ocp-recovery backup keygen FILE`) or "
            "--recipients-file FILE")
    keys = []
    for text, where in lines:
        if "SECRET-KEY" in text.upper() or "PRIVATE KEY" in text.upper():
            raise InvalidInput(
                f"the recipient given ({where}) is a private key (an identity), not a public "
                "key: it is not shown here, and it must not stay on this host",
                next_step="delete it from this host, keep it with the operators, and give its "
                "public key instead (the `# public key: age1…` line of the identity file)")
        try:
            if text.startswith("age1"):
                keys.append(x25519.Recipient.from_str(text))
            elif text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
                keys.append(ssh.Recipient.from_str(text))
            else:
                raise ValueError("neither an age1… nor an ssh-ed25519/ssh-rsa public key")
        except Exception as exc:  # pyrage raises RecipientError or ValueError
            raise InvalidInput(f"recipient {_abbreviated(text)!r} ({where}) is not a public "
                               f"key age accepts: {exc}",
                               next_step="give an age1… public key (the line `# public key:` "
                               "of an identity file) or an SSH public key") from exc
    return Recipients(tuple(keys), tuple(text for text, _ in lines))


def load_identities(path: Path, shown: str) -> list[Any]:
    """An age identity file (AGE-SECRET-KEY-1… lines, as `age-keygen` and `backup keygen`
    write) or an unencrypted OpenSSH private key."""
    from pyrage import ssh, x25519

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the identity file {shown}: {exc}",
                           next_step="give --identity FILE: the age identity (private key) "
                           "the backup was encrypted for") from exc
    if b"PRIVATE KEY-----" in data:
        try:
            return [ssh.Identity.from_buffer(data)]
        except Exception as exc:
            raise InvalidInput(f"{shown} is not an SSH private key age can use: {exc}",
                               next_step="give an unencrypted ed25519 or RSA key, or an age "
                               "identity file") from exc
    identities = []
    for line in data.decode(errors="replace").splitlines():
        if line.strip().startswith("AGE-SECRET-KEY-1"):
            try:
                identities.append(x25519.Identity.from_str(line.strip()))
            except Exception as exc:
                raise InvalidInput(f"{shown} holds a damaged AGE-SECRET-KEY line: {exc}",
                                   next_step="give the identity file as written by "
                                   "`age-keygen` or `ocp-recovery backup keygen`") from exc
    if not identities:
        raise InvalidInput(f"{shown} holds no AGE-SECRET-KEY-1… line and no SSH private key",
                           next_step="give the age identity file (private key) the backup "
                           "was encrypted for")
    return identities


def new_identity() -> tuple[str, str]:
    """(identity file text, public key) of a new x25519 key pair."""
    from pyrage import x25519

    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    return f"# public key: {public}\n{identity}\n", public


class HashingReader:
    """A stream read by age (8 KiB at a time), hashed and counted on the way: read from its
    source and hashed a block at a time, not 8 KiB at a time."""

    BLOCK = 1 << 20

    def __init__(self, source: Any, progress: Callable[[int, int], None] | None = None,
                 total: int = 0):
        self._source = source
        self._progress = progress
        self._total = total
        self._block = memoryview(b"")
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if not self._block:
            data = self._source.read(self.BLOCK)
            if not data:
                return b""
            self.sha256.update(data)
            self.size += len(data)
            if self._progress is not None:
                self._progress(self.size, self._total)
            self._block = memoryview(data)
        if n < 0 or n >= len(self._block):
            data, self._block = bytes(self._block), memoryview(b"")
            return data
        data, self._block = bytes(self._block[:n]), self._block[n:]
        return data


class HashingWriter:
    """A writer that hashes and counts what it passes on."""

    def __init__(self, target: Writer):
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._target.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Watched:
    """A stream handed to pyrage, which replaces an exception raised by its read or write
    with its own EncryptError/DecryptError naming only the class: the first one is kept, to
    be raised instead (a store that stopped answering stays exit 16, a full disk exit 7)."""

    def __init__(self, stream: Any, failures: list[BaseException]):
        self._stream = stream
        self._failures = failures

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._stream.read(n)
        except BaseException as exc:
            self._failures.append(exc)
            raise
        return data

    def write(self, data: bytes) -> int:
        try:
            return int(self._stream.write(data))
        except BaseException as exc:
            self._failures.append(exc)
            raise

    def flush(self) -> None:
        pass


def encrypt(source: Any, target: Writer, recipients: Recipients) -> None:
    """`source` has read()."""
    import pyrage

    failures: list[BaseException] = []
    try:
        pyrage.encrypt_io(_Watched(source, failures), _Watched(target, failures),
                          list(recipients.keys))
    except Exception:
        if failures:
            raise failures[0] from None
        raise


def decrypt(source: Any, target: Writer, identities: list[Any], shown: str) -> None:
    """`source` has read(); a wrong identity is bad input, a damaged stream is integrity."""
    import pyrage

    failures: list[BaseException] = []
    try:
        pyrage.decrypt_io(_Watched(source, failures), _Watched(target, failures), identities)
    # A chunk that fails authentication (a flipped byte, a cut) is a bare OSError
    # "decryption error" from pyrage, not a DecryptError.
    except (pyrage.DecryptError, OSError) as exc:
        if failures:
            raise failures[0] from None
        if "no matching keys" in str(exc).lower():
            given = ", ".join(str(i.to_public()) for i in identities if hasattr(i, "to_public"))
            raise InvalidInput(f"the identity given cannot decrypt {shown}: it is not one of "
                               "the recipients the backup was encrypted for"
                               + (f" (its public key is {given})" if given else ""),
                               next_step="give --identity the private key of a recipient "
                               "listed by `ocp-recovery backup ls s3://…`") from exc
        raise IntegrityError(f"{shown} failed to decrypt: {exc} (the stored object is damaged "
                             "or truncated)",
                             next_step="use another set (`ocp-recovery backup ls s3://…`)") \
            from exc


def _abbreviated(text: str) -> str:
    return text if len(text) <= 24 else text[:20] + "…"
