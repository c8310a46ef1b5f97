"""Offline, read-only reader for bbolt files (etcd ``member/snap/db`` and snapshot files).

Why this exists: before we trust a backup, or restore one, we want to know that the file
is a complete bbolt database and which etcd revision it holds, without starting etcd and
without linking Go code. Files can be several GiB, so memory must stay flat: the file is
never read whole and never mmap'ed. Pages are fetched one at a time with ``os.pread``;
of a multi-page (overflow) node only the first page is read, plus whatever keys or small
values we need, never the bodies of large values.

Format notes (bbolt v1 file format, version 2, little endian):

* Every page starts with a 16-byte header: id u64, flags u16, count u16, overflow u32. A
  page spans ``(1 + overflow) * page_size`` bytes. Flags: branch 0x01, leaf 0x02,
  meta 0x04, freelist 0x10.
* Pages 0 and 1 are meta pages. Meta body (after the header): magic u32, version u32,
  pageSize u32, flags u32, root bucket (root pgid u64, sequence u64), freelist pgid u64,
  high-water pgid u64, txid u64, checksum u64 = FNV-1a 64 of the 56 bytes before it.
* Leaf elements: flags u32 (0x01 = the value is a bucket), pos u32, ksize u32, vsize u32;
  branch elements: pos u32, ksize u32, child pgid u64; ``pos`` is relative to the
  element's own address. A bucket value is root pgid u64 + sequence u64; root 0 means an
  inline bucket whose leaf page follows the 16-byte header inside the value.
* Freelist page: ``count`` page ids (u64) after the header; if count is 0xFFFF the real
  count is the first u64 and the ids follow it. Freelist pgid 0xFFFF_FFFF_FFFF_FFFF means
  the freelist was not synced (bbolt ``NoFreelistSync``, which etcd 3.4/3.5 use).
* etcd's meta/finishedCompactRev holds a 17-byte revision (main, '_', sub), not a bare u64;
  meta/consistent_index is a bare 8-byte big-endian u64.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import add
from typing import Final

__all__ = ["BoltFormatError", "BoltStatus", "KeyVisitor", "check_header", "read_status"]

MAGIC: Final = 0xED0CDAED
VERSION: Final = 2

_BRANCH: Final = 0x01
_LEAF: Final = 0x02
_META: Final = 0x04
_FREELIST: Final = 0x10
_BUCKET_LEAF_FLAG: Final = 0x01
_NO_FREELIST: Final = 0xFFFF_FFFF_FFFF_FFFF

_PAGE_HEADER: Final = struct.Struct("<QHHI")  # id, flags, count, overflow
_META_BODY: Final = struct.Struct("<IIIIQQQQQQ")  # see module docstring
_BUCKET_HEADER: Final = struct.Struct("<QQ")  # root pgid, sequence
_U64: Final = struct.Struct("<Q")
_HDR: Final = _PAGE_HEADER.size  # 16
_ELEM: Final = 16  # leaf and branch elements are both 16 bytes
_META_LEN: Final = _HDR + _META_BODY.size  # 80 bytes: header + meta body
_CHECKSUMMED: Final = _META_BODY.size - 8  # 56 bytes of meta body covered by checksum

_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3
_MASK64: Final = 0xFFFF_FFFF_FFFF_FFFF

_MIN_PAGE_SIZE: Final = 512
_MAX_PAGE_SIZE: Final = 1 << 24  # bbolt probes page 1 at 1 KiB .. 16 MiB
_FREELIST_CHUNK_IDS: Final = 1 << 17  # 1 MiB of page ids per read

_VISIT_HEAD: Final = 4096  # bytes of an overflowing value given to a KeyVisitor
_BIG_ENDIAN_HOST: Final = sys.byteorder == "big"

_META_KEYS: Final = frozenset({b"finishedCompactRev", b"consistent_index"})


#: Called for each entry of bucket "key", in revision order: (revision key, the value's bytes
#: that are in the page already read, where the whole value starts in the file, its size).
#: The bytes are the whole value unless it spills into overflow pages (then its first 4 KiB);
#: the offset is None
#: for an inline bucket, whose bytes are always whole.
KeyVisitor = Callable[[bytes, bytes, int | None, int], None]


class BoltFormatError(ValueError):
    """The file is not a usable bbolt database; the message says what is wrong and where."""


@dataclass(frozen=True)
class BoltStatus:
    """What a backup check needs to know about a bbolt file, as of its newest valid meta."""

    page_size: int
    txid: int
    #: entries directly in each top-level bucket, summed: what ``etcdutl snapshot status``
    #: reports as "totalKey". A nested bucket counts as one entry of its parent and its
    #: contents are not counted (unlike bbolt ``Stats().KeyN``); etcd has no nested buckets.
    #: Every stored revision of every key, deletions and etcd's own records included.
    total_keys: int
    #: etcd keys that exist at ``revision``: what a restore of this file serves
    live_keys: int
    #: highest main revision in bucket "key", 0 if the bucket is empty or absent
    revision: int
    #: main revision in meta/finishedCompactRev, 0 if absent
    compact_revision: int
    #: meta/consistent_index, 0 if absent
    consistent_index: int
    #: names of the top-level buckets, in key order
    buckets: tuple[str, ...]


@dataclass(frozen=True)
class _Meta:
    index: int
    page_size: int
    root: int
    freelist: int
    high_water: int
    txid: int


def check_header(path: str | os.PathLike[str], *, length: int | None = None) -> tuple[int, int]:
    """Cheap check touching only the two meta pages; returns ``(page_size, txid)``.

    Use it to reject an obviously broken or truncated file quickly. ``length`` is how many
    bytes of the file belong to the db (snapshot files carry a 32-byte sha256 trailer).
    Raises :class:`BoltFormatError` like :func:`read_status`.
    """
    fd, length = _open(path, length)
    try:
        page_size, meta = _load_meta(fd, length)
    finally:
        os.close(fd)
    return page_size, meta.txid


def read_status(path: str | os.PathLike[str], *, length: int | None = None,
                visit: KeyVisitor | None = None) -> BoltStatus:
    """Walk the whole B+tree of the newest valid meta and summarise it, checking as we go.

    Why: this is the offline equivalent of ``etcdutl snapshot status`` (including bbolt's
    integrity check), so a backup can be validated without etcd binaries. ``length`` is
    how many bytes of the file belong to the db: an etcd snapshot file has a 32-byte
    sha256 trailer after the db, so pass ``size - 32`` for those; ``None`` means the whole
    file (e.g. a raw ``member/snap/db``).

    Validates both meta pages' magic (0xED0CDAED), version (2) and FNV-1a-64 checksum and
    picks the valid one with the highest txid (as bbolt does); then checks that every page
    referenced (tree, overflow, freelist) lies below the high-water mark and inside
    ``length``, carries the expected id and flags, is referenced only once and is not also
    on the freelist, and, when the file carries a freelist (etcd's usually do not: they
    are written with NoFreelistSync), that every page below the high-water mark is either
    reachable or free. Raises :class:`BoltFormatError` for anything malformed. Memory use
    is bounded by two bitmaps of one bit per page (256 KiB per 8 GiB at 4 KiB pages) plus
    a few pages. ``visit``, when given, sees every entry of bucket "key" as it is walked
    (see :data:`KeyVisitor`): one pass both checks the file and lists what it holds.
    """
    fd, length = _open(path, length)
    try:
        page_size, meta = _load_meta(fd, length)
        return _Walker(fd, page_size, meta, visit).run()
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- file access


def _open(path: str | os.PathLike[str], length: int | None) -> tuple[int, int]:
    """Open read-only and resolve the db length (bytes of the file that belong to the db)."""
    if length is not None and length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            size = st.st_size
        elif stat.S_ISBLK(st.st_mode):
            size = os.lseek(fd, 0, os.SEEK_END)
        else:
            raise BoltFormatError(f"not a regular file or block device: {os.fspath(path)!r}")
        if length is None:
            length = size
        elif length > size:
            raise BoltFormatError(
                f"truncated: caller says the db is {length} bytes but the file has only {size}"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, length


def _pread(fd: int, n: int, offset: int) -> bytes:
    """Read exactly ``n`` bytes at ``offset``; a short read means the file shrank under us."""
    data = os.pread(fd, n, offset)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, offset + got)
        if not more:
            raise BoltFormatError(
                f"truncated: wanted {n} bytes at offset {offset}, the file ended after {got}"
            )
        parts.append(more)
        got += len(more)
    return b"".join(parts)


# ---------------------------------------------------------------------------- meta pages


def _fnv1a64(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


def _parse_meta(buf: bytes, index: int, page_size: int | None) -> _Meta | str:
    """Decode meta page ``index``; returns the reason as a string when it is not valid."""
    if len(buf) < _META_LEN:
        return f"truncated meta page {index} ({len(buf)} of {_META_LEN} bytes)"
    pid, flags, _count, _overflow = _PAGE_HEADER.unpack_from(buf, 0)
    (magic, version, psize, _mflags, root, _seq, freelist, high_water, txid, checksum) = (
        _META_BODY.unpack_from(buf, _HDR)
    )
    if magic != MAGIC:
        return f"bad magic 0x{magic:08x} at page {index}"
    if version != VERSION:
        return f"unsupported version {version} at page {index} (want {VERSION})"
    computed = _fnv1a64(buf[_HDR : _HDR + _CHECKSUMMED])
    if checksum != computed:
        return f"bad checksum at page {index}: stored 0x{checksum:016x}, computed 0x{computed:016x}"
    if flags != _META:
        return f"bad page flags 0x{flags:02x} at meta page {index} (want 0x{_META:02x})"
    if pid != index:
        return f"meta page {index} says it is page {pid}"
    if not (_MIN_PAGE_SIZE <= psize <= _MAX_PAGE_SIZE) or psize & (psize - 1):
        return f"implausible page size {psize} at page {index}"
    if page_size is not None and psize != page_size:
        return f"page {index} says page size is {psize}, but it sits at offset {page_size}"
    return _Meta(index, psize, root, freelist, high_water, txid)


def _load_meta(fd: int, length: int) -> tuple[int, _Meta]:
    """Find the page size and pick the meta bbolt would use; check it fits in ``length``."""
    if length < _META_LEN:
        raise BoltFormatError(f"not a bbolt file: {length} bytes is too small to hold a meta page")
    m0 = _parse_meta(_pread(fd, _META_LEN, 0), 0, None)
    if isinstance(m0, _Meta):
        page_size = m0.page_size
        m1: _Meta | str | None = None
    else:
        # Page 0 is unusable, so its page size is unknown: probe for meta page 1 at the
        # usual sizes (bbolt probes 1 KiB .. 16 MiB too), requiring its pageSize to agree.
        page_size = 0
        m1 = None
        first_err1: str | None = None
        sizes = [os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096, 4096]
        sizes += [1024 << i for i in range(15)]
        for cand in dict.fromkeys(sizes):
            if cand + _META_LEN > length:
                continue
            got = _parse_meta(_pread(fd, _META_LEN, cand), 1, cand)
            if isinstance(got, _Meta):
                page_size, m1 = cand, got
                break
            first_err1 = first_err1 or f"at offset {cand}: {got}"
        if m1 is None:
            prefix = "not a bbolt file: " if m0.startswith("bad magic") else "no valid meta page: "
            rest = f" (first probe {first_err1})" if first_err1 else ""
            raise BoltFormatError(
                f"{prefix}{m0}; and no valid meta page 1 at any probed page size{rest}"
            )
    if length < 2 * page_size:
        raise BoltFormatError(
            f"truncated: {length} bytes cannot hold the two {page_size}-byte meta pages"
        )
    if m1 is None:
        m1 = _parse_meta(_pread(fd, _META_LEN, page_size), 1, page_size)

    valid = [m for m in (m0, m1) if isinstance(m, _Meta)]
    if not valid:
        prefix = "not a bbolt file: " if str(m0).startswith("bad magic") else "no valid meta page: "
        raise BoltFormatError(f"{prefix}{m0}; {m1}")
    # bbolt prefers the meta with the higher txid and falls back to the other one; on a
    # tie it keeps meta 0. max() returns the first maximal element, i.e. meta 0 on a tie.
    meta = max(valid, key=lambda m: m.txid)

    hw = meta.high_water
    where = f"meta page {meta.index} (txid {meta.txid})"
    if hw < 3:
        raise BoltFormatError(f"{where}: high-water mark {hw} is impossibly low")
    if not 2 <= meta.root < hw:
        raise BoltFormatError(f"{where}: root page {meta.root} out of range (high-water mark {hw})")
    if meta.freelist != _NO_FREELIST and not 2 <= meta.freelist < hw:
        raise BoltFormatError(
            f"{where}: freelist page {meta.freelist} out of range (high-water mark {hw})"
        )
    if hw * page_size > length:
        raise BoltFormatError(
            f"truncated: {where} says the db spans {hw} pages ({hw * page_size} bytes) "
            f"but only {length} bytes are present"
        )
    return page_size, meta


# ------------------------------------------------------------------------------ tree walk


class _PageView:
    """One page span: the first chunk is in memory, bytes beyond it are read on demand."""

    __slots__ = ("buf", "fd", "offset", "span")

    def __init__(self, fd: int | None, offset: int, span: int, buf: bytes) -> None:
        self.fd = fd  # None: buf is the whole span (inline bucket page)
        self.offset = offset
        self.span = span
        self.buf = buf

    def get(self, start: int, end: int, what: str) -> bytes:
        if end > self.span:
            raise BoltFormatError(f"{what} runs past the end of its page ({end} > {self.span})")
        if end <= len(self.buf) or self.fd is None:
            return self.buf[start:end]
        return _pread(self.fd, end - start, self.offset + start)


def _u32s(data: bytes) -> array[int]:
    a = array("I")
    a.frombytes(data)
    if _BIG_ENDIAN_HOST:
        a.byteswap()
    return a


def _u64s(data: bytes) -> array[int]:
    a = array("Q")
    a.frombytes(data)
    if _BIG_ENDIAN_HOST:
        a.byteswap()
    return a


# bucket context: (depth, kind); depth -1 is the root "bucket of buckets", 0 a top-level
# bucket, >0 a nested bucket; kind is b"key" / b"meta" for those two top-level buckets.
_Ctx = tuple[int, bytes | None]
_ROOT_CTX: Final[_Ctx] = (-1, None)
# who referenced a page, for error messages: a branch pgid or a description
_Ref = int | str


def _ref(ref: _Ref) -> str:
    return f"branch page {ref}" if isinstance(ref, int) else ref


class _Walker:
    """Iterative depth-first walk over every bucket's pages, with reachability bitmaps.

    The hot path (one leaf page of a top-level bucket) is kept lean on purpose: a dense
    8 GiB db has two million of them.
    """

    def __init__(self, fd: int, page_size: int, meta: _Meta,
                 visit: KeyVisitor | None = None) -> None:
        self.fd = fd
        self.visit = visit
        self.ps = page_size
        self.meta = meta
        self.hw = meta.high_water
        self.reached = bytearray((self.hw + 7) >> 3)
        self.freed: bytearray | None = None
        self.total_keys = 0
        self.max_key = b""  # greatest key seen in bucket "key"
        self.max_key_where: _Ref = ""
        # hash of each user key whose newest revision seen is a put, not a deletion. 64
        # bits (a collision miscounts by one, ~1e-8 at a million keys) and no key bytes
        # kept: a million keys cost about 60 MiB, their names could cost 200.
        self.live: set[int] = set()
        self.meta_values: dict[bytes, bytes] = {}
        self.buckets: list[str] = []
        # depth-first work stack, one entry per open branch page / bucket root:
        # (iterator over child pgids or inline page bytes, bucket context, who referenced it)
        self.stack: list[tuple[Iterator[int | bytes], _Ctx, _Ref]] = []

    def run(self) -> BoltStatus:
        self._mark(0, 2, "the meta pages")
        if self.meta.freelist != _NO_FREELIST:
            self._read_freelist(self.meta.freelist)
        self.stack.append((iter((self.meta.root,)), _ROOT_CTX, f"meta page {self.meta.index}"))
        stack, page, inline = self.stack, self._page, self._inline
        while stack:
            children, ctx, ref = stack[-1]
            depth = len(stack)
            for target in children:
                if isinstance(target, int):
                    page(target, ctx, ref)
                else:
                    inline(target, ctx, _ref(ref))
                if len(stack) != depth:
                    break  # descend into what was just pushed; come back to the rest later
            else:
                stack.pop()
        if self.freed is not None:
            self._check_accounted()
        revision = 0
        if self.max_key:
            revision = _key_main_rev(self.max_key, _page_name(self.max_key_where))
        compact = self.meta_values.get(b"finishedCompactRev")
        cindex = self.meta_values.get(b"consistent_index")
        return BoltStatus(
            page_size=self.ps,
            txid=self.meta.txid,
            total_keys=self.total_keys,
            live_keys=len(self.live),
            revision=revision,
            compact_revision=0 if compact is None else _be_main(compact, "meta/finishedCompactRev"),
            consistent_index=0 if cindex is None else _be_main(cindex, "meta/consistent_index"),
            buckets=tuple(self.buckets),
        )

    # -- page bookkeeping

    def _mark(self, start: int, end: int, ref: _Ref) -> None:
        reached, freed = self.reached, self.freed
        for pgid in range(start, end):
            i, bit = pgid >> 3, 1 << (pgid & 7)
            if reached[i] & bit:
                raise BoltFormatError(f"page {pgid} is referenced twice (again from {_ref(ref)})")
            if freed is not None and freed[i] & bit:
                raise BoltFormatError(
                    f"page {pgid} (referenced from {_ref(ref)}) is also on the freelist"
                )
            reached[i] |= bit

    def _check_accounted(self) -> None:
        assert self.freed is not None
        known = int.from_bytes(self.reached, "little") | int.from_bytes(self.freed, "little")
        missing = ((1 << self.hw) - 1) & ~known
        if missing:
            first = (missing & -missing).bit_length() - 1
            raise BoltFormatError(
                f"{missing.bit_count()} page(s) below the high-water mark {self.hw} are "
                f"neither reachable nor free (first: page {first})"
            )

    def _read_freelist(self, pgid: int) -> None:
        ps, hw = self.ps, self.hw
        pid, flags, count, overflow = _PAGE_HEADER.unpack(_pread(self.fd, _HDR, pgid * ps))
        if pid != pgid:
            raise BoltFormatError(f"freelist page {pgid} says it is page {pid}")
        if flags != _FREELIST:
            raise BoltFormatError(
                f"bad page flags 0x{flags:02x} at freelist page {pgid} (want 0x{_FREELIST:02x})"
            )
        end = pgid + 1 + overflow
        if end > hw:
            raise BoltFormatError(
                f"freelist page {pgid} with {overflow} overflow page(s) runs past the "
                f"high-water mark {hw}"
            )
        self._mark(pgid, end, f"meta page {self.meta.index} as its freelist")
        offset = pgid * ps + _HDR
        if count == 0xFFFF:  # the real count did not fit in u16: it is the first u64
            (count,) = _U64.unpack(_pread(self.fd, 8, offset))
            offset += 8
        if offset + 8 * count > end * ps:
            raise BoltFormatError(
                f"freelist page {pgid} claims {count} ids, more than its {end - pgid} page(s) hold"
            )
        freed = bytearray(len(self.reached))
        remaining = count
        while remaining:
            n = min(remaining, _FREELIST_CHUNK_IDS)
            ids = _u64s(_pread(self.fd, 8 * n, offset))
            lo, hi = min(ids), max(ids)
            if lo < 2 or hi >= hw:
                bad = lo if lo < 2 else hi
                raise BoltFormatError(f"freelist page {pgid} lists page {bad}, outside 2..{hw - 1}")
            for fid in ids:
                i, bit = fid >> 3, 1 << (fid & 7)
                if freed[i] & bit:
                    raise BoltFormatError(f"page {fid} is on the freelist twice")
                freed[i] |= bit
            remaining -= n
            offset += 8 * n
        self.freed = freed

    # -- pages

    def _page(self, pgid: int, ctx: _Ctx, ref: _Ref) -> None:
        ps, hw = self.ps, self.hw
        if not 2 <= pgid < hw:
            raise BoltFormatError(
                f"page {pgid} (referenced from {_ref(ref)}) is out of range: "
                f"valid data pages are 2..{hw - 1}"
            )
        offset = pgid * ps
        buf = os.pread(self.fd, ps, offset)
        if len(buf) != ps:
            buf = _pread(self.fd, ps, offset)
        pid, flags, count, overflow = _PAGE_HEADER.unpack_from(buf, 0)
        if pid != pgid:
            raise BoltFormatError(
                f"page {pgid} (referenced from {_ref(ref)}) says it is page {pid}"
            )
        if flags != _LEAF and flags != _BRANCH:
            raise BoltFormatError(
                f"bad page flags 0x{flags:02x} at page {pgid} (referenced from {_ref(ref)}; "
                f"want branch 0x01 or leaf 0x02)"
            )
        if overflow:
            if pgid + 1 + overflow > hw:
                raise BoltFormatError(
                    f"page {pgid} with {overflow} overflow page(s) runs past the "
                    f"high-water mark {hw}"
                )
            self._mark(pgid, pgid + 1 + overflow, ref)
            view: _PageView | None = _PageView(self.fd, offset, (1 + overflow) * ps, buf)
        else:
            i, bit = pgid >> 3, 1 << (pgid & 7)
            reached, freed = self.reached, self.freed
            if reached[i] & bit or (freed is not None and freed[i] & bit):
                self._mark(pgid, pgid + 1, ref)  # raises with the right message
            reached[i] |= bit
            view = None
        if flags == _LEAF:
            self._leaf(buf, view, count, ctx, pgid)
        else:
            self._branch(view or _PageView(None, offset, ps, buf), pgid, count, ctx)

    def _inline(self, data: bytes, ctx: _Ctx, where: str) -> None:
        if len(data) < _HDR:
            raise BoltFormatError(f"{where}: inline page is only {len(data)} bytes")
        _pid, flags, count, _overflow = _PAGE_HEADER.unpack_from(data, 0)
        if flags != _LEAF:
            raise BoltFormatError(
                f"bad page flags 0x{flags:02x} in {where} (an inline bucket page must be a leaf)"
            )
        self._leaf(data, None, count, ctx, where)

    def _branch(self, view: _PageView, pgid: int, count: int, ctx: _Ctx) -> None:
        if count == 0:
            raise BoltFormatError(f"branch page {pgid} has no elements")
        table_end = _HDR + _ELEM * count
        table = view.get(_HDR, table_end, f"element table of branch page {pgid}")
        words = _u32s(table)
        key_ends = map(add, map(add, range(_HDR, table_end, _ELEM), words[0::4]), words[1::4])
        if max(key_ends) > view.span:
            raise BoltFormatError(f"branch page {pgid}: a key runs past the end of the page")
        self.stack.append((iter(_u64s(table)[1::2]), ctx, pgid))

    def _leaf(self, buf: bytes, view: _PageView | None, count: int, ctx: _Ctx, where: _Ref) -> None:
        """One leaf page. ``buf`` holds the page (or its first page when ``view`` is set)."""
        if count == 0:
            return
        table_end = _HDR + _ELEM * count
        span = len(buf) if view is None else view.span
        if table_end <= len(buf):
            words = _u32s(buf[_HDR:table_end])
        else:
            words = _u32s(_get(buf, view, _HDR, table_end, "element table", where))
        flags, pos, ksize, vsize = words[0::4], words[1::4], words[2::4], words[3::4]
        # every element's key and value must lie inside the page span. Cheap upper bound
        # first (element i sits at 16+16i, data at +pos); the exact check only if needed.
        if table_end - _ELEM + max(pos) + max(ksize) + max(vsize) > span:
            ends = map(add, map(add, map(add, range(_HDR, table_end, _ELEM), pos), ksize), vsize)
            if max(ends) > span:
                raise BoltFormatError(
                    f"{_page_name(where)}: a leaf element runs past the end of the page"
                )
        depth, kind = ctx
        if depth == 0:
            self.total_keys += count
            if kind == b"key":
                self._key_entries(buf, view, flags, pos, ksize, vsize, where)
                last = count - 1
                if not flags[last]:
                    start = table_end - _ELEM + pos[last]
                    key = _get(buf, view, start, start + ksize[last], "key", where)
                    if key > self.max_key:
                        self.max_key, self.max_key_where = key, where
            elif kind == b"meta":
                self._meta_entries(buf, view, words, where)
        if flags.count(0) == count:  # no nested buckets: the common case
            if depth < 0:
                raise BoltFormatError(
                    f"{_page_name(where)}: the root bucket holds plain keys, not buckets"
                )
            return
        for i, f in enumerate(flags):
            if f == _BUCKET_LEAF_FLAG:
                start = _HDR + _ELEM * i + pos[i]
                mid = start + ksize[i]
                name = _get(buf, view, start, mid, "bucket name", where)
                value = _get(buf, view, mid, mid + vsize[i], "bucket value", where)
                self._bucket(name, value, depth + 1, _page_name(where))
            elif f:
                raise BoltFormatError(f"{_page_name(where)}: bad leaf element flags 0x{f:x}")
            elif depth < 0:
                start = _HDR + _ELEM * i + pos[i]
                name = _get(buf, view, start, start + ksize[i], "key", where)
                raise BoltFormatError(
                    f"{_page_name(where)}: the root bucket holds a plain key {name[:64]!r}, "
                    f"not a bucket"
                )

    def _meta_entries(
        self, buf: bytes, view: _PageView | None, words: array[int], where: _Ref
    ) -> None:
        """Collect the few etcd meta values we report from one leaf of bucket "meta"."""
        for i in range(len(words) // 4):
            flags, pos, ksize, vsize = words[4 * i : 4 * i + 4]
            if flags:
                continue
            start = _HDR + _ELEM * i + pos
            key = _get(buf, view, start, start + ksize, "key", where)
            if key in _META_KEYS:
                end = start + ksize
                self.meta_values[key] = _get(buf, view, end, end + vsize, "value", where)

    def _key_entries(
        self, buf: bytes, view: _PageView | None, flags: array[int], pos: array[int],
        ksizes: array[int], vsizes: array[int], where: _Ref
    ) -> None:
        """Follow one leaf of bucket "key", whose entries come in revision order: a put
        makes its key live, a deletion (a tombstone: a revision key ending in 't') ends it.
        The user key is the first field of the value, an mvccpb.KeyValue."""
        add, discard, blen, visit = self.live.add, self.live.discard, len(buf), self.visit
        page_offset = where * self.ps if isinstance(where, int) else None
        for element, flag, offset, ksize, vsize in zip(
            range(_HDR, _HDR + _ELEM * len(pos), _ELEM), flags, pos, ksizes, vsizes, strict=True
        ):
            if flag:
                continue  # a nested bucket: _leaf refuses or walks it
            if not vsize:
                continue  # etcdutl --bump-revision's marker at the new revision: no key
            start = element + offset
            value = start + ksize
            if value + 2 <= blen and buf[value] == 0x0A and buf[value + 1] < 0x80:
                # field 1 (key), its length in one byte: nearly every Kubernetes key
                begin, end = value + 2, value + 2 + buf[value + 1]
            else:
                begin, end = _kv_key_span(buf, view, value, where)
            if end > value + vsize:
                raise BoltFormatError(
                    f"{_page_name(where)}: a value in bucket 'key' is not an etcd KeyValue "
                    "(its key runs past the value)"
                )
            key = buf[begin:end] if end <= blen else _get(buf, view, begin, end, "key", where)
            if ksize == 18 and _get(buf, view, start + 17, value, "key", where) == b"t":
                discard(hash(key))
            else:
                add(hash(key))
            if visit is not None:
                # A value inside the page read is passed whole; one in overflow pages only
                # its head, which holds the KeyValue's key and revisions.
                head = buf[value:value + vsize] if value + vsize <= blen else \
                    _get(buf, view, value, value + min(vsize, _VISIT_HEAD), "value", where)
                visit(_get(buf, view, start, value, "key", where), head,
                      None if page_offset is None else page_offset + value, vsize)

    def _bucket(self, name: bytes, value: bytes, depth: int, where: str) -> None:
        label = name[:64].decode("utf-8", "backslashreplace")
        if len(value) < _BUCKET_HEADER.size:
            raise BoltFormatError(
                f"{where}: bucket {label!r} has a {len(value)}-byte value, "
                f"shorter than a bucket header"
            )
        root, _seq = _BUCKET_HEADER.unpack_from(value, 0)
        kind = name if depth == 0 and name in (b"key", b"meta") else None
        if depth == 0:
            self.buckets.append(name.decode("utf-8", "backslashreplace"))
        ctx = (depth, kind)
        if root == 0:
            inline = value[_BUCKET_HEADER.size :]
            self.stack.append((iter((inline,)), ctx, f"inline bucket {label!r}"))
        else:
            self.stack.append((iter((root,)), ctx, f"bucket {label!r} in {where}"))


def _get(buf: bytes, view: _PageView | None, start: int, end: int, what: str, where: _Ref) -> bytes:
    """Bytes [start, end) of a page span whose first part is ``buf``."""
    if end <= len(buf):
        return buf[start:end]
    if view is None:
        raise BoltFormatError(
            f"{_page_name(where)}: {what} runs past the end of its page ({end} > {len(buf)})"
        )
    return view.get(start, end, f"{what} in {_page_name(where)}")


def _kv_key_span(buf: bytes, view: _PageView | None, value: int, where: _Ref) -> tuple[int, int]:
    """Where the key of the mvccpb.KeyValue at ``value`` lies: tag 0x0a (field 1, bytes),
    then a varint length. etcd's marshaller writes fields in number order, key first."""
    head = _get(buf, view, value, value + 1, "value", where)
    if head != b"\x0a":
        raise BoltFormatError(
            f"{_page_name(where)}: a value in bucket 'key' is not an etcd KeyValue "
            f"(starts {head!r}, not field 1)"
        )
    length = shift = 0
    at = value + 1
    while True:
        (byte,) = _get(buf, view, at, at + 1, "value", where)
        at += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return at, at + length
        shift += 7
        if shift > 28:
            raise BoltFormatError(
                f"{_page_name(where)}: a value in bucket 'key' has a malformed key length"
            )


def _page_name(where: _Ref) -> str:
    return f"page {where}" if isinstance(where, int) else where


def _key_main_rev(key: bytes, where: str) -> int:
    """Main revision of an etcd "key" bucket key: 8-byte BE main, '_', 8-byte BE sub[, 't']."""
    if len(key) not in (17, 18) or key[8] != 0x5F or (len(key) == 18 and key[17] != 0x74):
        raise BoltFormatError(f"{where}: key {key[:64]!r} in bucket 'key' is not an etcd revision")
    return int.from_bytes(key[:8], "big")


def _be_main(value: bytes, what: str) -> int:
    """First 8 bytes big endian: a plain u64, or the main part of a 17-byte revision."""
    if len(value) != 8 and not (len(value) == 17 and value[8] == 0x5F):
        raise BoltFormatError(f"{what}: unexpected {len(value)}-byte value {value[:32]!r}")
    return int.from_bytes(value[:8], "big")
