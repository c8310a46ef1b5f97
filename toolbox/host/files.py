"""File operations that survive a crash: atomic writes, fsync'd renames, private modes."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from toolbox.errors import InsufficientSpace, InvalidInput

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(directory: Path) -> bool:
    """Create `directory` 0700 (parents as needed) if missing. True when it was created;
    an existing directory keeps its mode (it is the operator's)."""
    if directory.is_dir():
        return False
    if directory.exists():
        raise InvalidInput(f"{directory} exists and is not a directory")
    missing = []
    parent = directory
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for d in reversed(missing):
        d.mkdir(mode=PRIVATE_DIR)
        os.chmod(d, PRIVATE_DIR)
    fsync_dir(parent)
    return True


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


@contextlib.contextmanager
def partial_file(final: Path, mode: int = PRIVATE_FILE) -> Iterator[BinaryIO]:
    """Write to `<final>.partial`; on success fsync and rename into place, on any failure
    remove the partial file so nothing half-written is ever taken for a good file."""
    partial = partial_path(final)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        # 1 MiB writes instead of one syscall per etcd 32 KiB message.
        with os.fdopen(fd, "wb", buffering=1 << 20) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, final)
        fsync_dir(final.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _out_of_space(final, "the partial file was removed") from exc
        raise


@contextlib.contextmanager
def unnamed_until_complete(final: Path, mode: int = PRIVATE_FILE) -> Iterator[BinaryIO]:
    """As partial_file, but the data goes to an unnamed file in `final`'s directory
    (O_TMPFILE), linked as `final` once complete and synced: a process SIGKILLed while
    writing leaves nothing behind. `final` must not exist. partial_file where the file system
    has no O_TMPFILE."""
    try:
        fd = os.open(final.parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        with partial_file(final, mode) as stream:
            yield stream
        return
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
            directory = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                # With a dir fd os.link is linkat(…, AT_SYMLINK_FOLLOW), which links the
                # file /proc/self/fd/N stands for, not that link itself (EXDEV).
                os.link(f"/proc/self/fd/{stream.fileno()}", final.name, dst_dir_fd=directory)
                os.fsync(directory)
            finally:
                os.close(directory)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _out_of_space(final, "nothing of it was left") from exc
        raise


def _out_of_space(final: Path, left: str) -> InsufficientSpace:
    return InsufficientSpace(
        f"{final.parent} ran out of space while writing {final.name}",
        state=f"unchanged: {left}",
        next_step="free space there or choose another directory, then run the same "
        "command again",
    )


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    with partial_file(path, mode) as stream:
        stream.write(data)


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def require_free_space(directory: Path, needed: int, what: str, shown: str | None = None
                       ) -> None:
    """`shown`: the directory as the operator knows it (a host path), if not `directory`."""
    available = free_bytes(directory)
    if available < needed:
        where = shown or str(directory)
        # The shortfall too: two sizes that round alike would read as no shortfall.
        raise InsufficientSpace(
            f"{where} has {human_bytes(available)} free, {human_bytes(needed - available)} "
            f"less than needed for {what} ({human_bytes(needed)})",
            next_step=f"free space on {where} or choose another directory, then run the "
            "same command again",
        )


def remove_quietly(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def move_path(source: Path, target: Path) -> None:
    """Move a file or directory, surviving a kill at any point: a rename when both are on
    one filesystem; otherwise a copy under `<target>.partial`, synced, renamed, and only
    then the source removed. Idempotent: a source already gone with the target present is
    a move already made."""
    if not source.exists() and not source.is_symlink():
        if target.exists():
            return
        raise FileNotFoundError(f"neither {source} nor {target} exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
        fsync_dir(target.parent)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    staging = partial_path(target)
    remove_quietly(staging)
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, staging, symlinks=True)
    else:
        shutil.copy2(source, staging, follow_symlinks=False)
    os.sync()
    os.rename(staging, target)
    fsync_dir(target.parent)
    remove_quietly(source)


def tree_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def same_filesystem(a: Path, b: Path) -> bool:
    return nearest_existing(a).stat().st_dev == nearest_existing(b).stat().st_dev


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists: where something not made yet would
    live (its filesystem, its free space)."""
    while not path.exists():
        path = path.parent
    return path


def remove_empty_tree(path: Path) -> None:
    """Remove `path` if it holds nothing but empty directories (a stash after rollback)."""
    if not path.is_dir():
        return
    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
            sub.rmdir()
    if not any(path.iterdir()):
        path.rmdir()


def copy_file(source: Path, target: Path) -> None:
    """Copy a file with its mode and times through `<target>.partial`, synced, then renamed:
    a kill never leaves a half copy under the target's name."""
    staging = partial_path(target)
    try:
        shutil.copy2(source, staging)
        with staging.open("rb") as copied:
            os.fsync(copied.fileno())
        os.rename(staging, target)
    except BaseException:
        remove_quietly(staging)
        raise
    fsync_dir(target.parent)


def is_read_only(directory: Path) -> bool:
    """Whether the file system holding `directory` is mounted read-only."""
    return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)


@contextlib.contextmanager
def scratch_file(near: Path, size: int, what: str) -> Iterator[tuple[BinaryIO, Path]]:
    """An unnamed file of up to `size` bytes on the file system of `near` (or of its nearest
    existing parent; nothing is created): O_TMPFILE or created and unlinked at once, so no
    directory ever lists it and it is freed when closed, even if this process is killed.
    Yields the stream and a path that opens it (/proc/self/fd/N)."""
    import tempfile

    directory = nearest_existing(near)
    require_free_space(directory, size, what)
    with tempfile.TemporaryFile(dir=directory) as stream:
        yield stream, Path(f"/proc/self/fd/{stream.fileno()}")
