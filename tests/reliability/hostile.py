"""For the hostile-input tests: builders of good and broken inputs (static-resources
archives, etcd snapshot files made without etcd, a master's host root in a tmp directory)
and `refused`, the check that a refusal has its exit code and changed nothing."""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
from pathlib import Path
from typing import Any

from tests.conftest import Outcome, assert_host_unchanged


def refused(run_cli: Any, root: Path, args: list[str], exit_code: int) -> Outcome:
    """The CLI against host root `root` must exit `exit_code` and leave every file under
    it as it was (the data dir included)."""
    with assert_host_unchanged(root):
        outcome: Outcome = run_cli(["--host-root", str(root), "--host-exec", "direct", *args],
                                   exit_code=exit_code)
    assert "\nerror: " in "\n" + outcome.stderr, outcome.stderr  # rendered, no traceback
    return outcome


# ---- static-resources archives ---------------------------------------------------------------
REV = "static-pod-resources/kube-apiserver-pod-7"


def make(path: Path, *members: tarfile.TarInfo, data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            content = (data or {}).get(m.name)
            if content is not None:
                m.size = len(content)
            tar.addfile(m, io.BytesIO(content) if content is not None else None)
    return path


def info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o600
         ) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    m.mode = mode
    return m


def good(path: Path) -> Path:
    return make(path, info("static-pod-resources", tarfile.DIRTYPE, mode=0o755),
                info(REV, tarfile.DIRTYPE, mode=0o755),
                info(f"{REV}/secrets/encryption-config/encryption-config"),
                info(f"{REV}/configmaps/x/link", tarfile.SYMTYPE, link="../y"),
                data={f"{REV}/secrets/encryption-config/encryption-config": b"keys"})


# ---- etcd snapshots --------------------------------------------------------------------------
# A bbolt file written by hand (format notes: toolbox/etcd/bbolt.py), so the snapshot tests
# need no etcd: two meta pages, then one root leaf holding the buckets "key" and "meta"
# inline, as etcd writes a small db with NoFreelistSync.
PAGE = 4096
_NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF
_BUCKET = 0x01


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFF_FFFF_FFFF_FFFF
    return h


def _page(pgid: int, flags: int, count: int, body: bytes) -> bytes:
    return struct.pack("<QHHI", pgid, flags, count, 0) + body


def _meta_page(index: int, txid: int, root: int, high_water: int) -> bytes:
    body = struct.pack("<IIIIQQQQQ", 0xED0CDAED, 2, PAGE, 0, root, 0, _NO_FREELIST,
                       high_water, txid)
    return _page(index, 0x04, 0, body + struct.pack("<Q", _fnv1a64(body))).ljust(PAGE, b"\0")


def _leaf(pgid: int, items: list[tuple[bytes, bytes, int]]) -> bytes:
    """A leaf page; each element's `pos` is relative to the element itself."""
    table, data = b"", b""
    for i, (key, value, flags) in enumerate(items):
        table += struct.pack("<IIII", flags, 16 * (len(items) - i) + len(data), len(key),
                             len(value))
        data += key + value
    return _page(pgid, 0x02, len(items), table + data)


def _inline_bucket(items: list[tuple[bytes, bytes, int]]) -> bytes:
    return struct.pack("<QQ", 0, 0) + _leaf(0, items)


def etcd_revision_key(main: int) -> bytes:
    return main.to_bytes(8, "big") + b"_" + (0).to_bytes(8, "big")


def key_value(key: bytes, value: bytes) -> bytes:
    """An mvccpb.KeyValue as etcd stores it in bucket "key": field 1 the key, 5 the value."""
    return b"\x0a" + bytes([len(key)]) + key + b"\x2a" + bytes([len(value)]) + value


def bolt_db(revisions: int = 5) -> bytes:
    """A valid etcd db holding `revisions` revisions in bucket "key", each a put of its
    own key: `revisions` live keys."""
    keys = [(etcd_revision_key(r), key_value(b"/kv-%d" % r, b"v"), 0)
            for r in range(1, revisions + 1)]
    meta = [(b"consistent_index", (revisions + 3).to_bytes(8, "big"), 0)]
    root = _leaf(2, [(b"key", _inline_bucket(keys), _BUCKET),
                     (b"meta", _inline_bucket(meta), _BUCKET)])
    return _meta_page(0, 2, 2, 3) + _meta_page(1, 1, 2, 3) + root.ljust(PAGE, b"\0")


def looping_bolt_db() -> bytes:
    """Valid meta pages whose root is a branch page listing itself as its only child: a
    reader that does not track visited pages never ends."""
    branch = _page(2, 0x01, 1, struct.pack("<IIQ", 16, 3, 2) + b"key")
    return _meta_page(0, 2, 2, 3) + _meta_page(1, 1, 2, 3) + branch.ljust(PAGE, b"\0")


def with_trailer(db: bytes) -> bytes:
    """An etcd snapshot file: the db, then the sha256 of the db."""
    return db + hashlib.sha256(db).digest()


def flip(data: bytes, *offsets: int) -> bytes:
    changed = bytearray(data)
    for offset in offsets:
        changed[offset] ^= 0x5A
    return bytes(changed)


# ---- a master's host root --------------------------------------------------------------------
TIMESTAMP = "2020-04-17_170928"
ETCD_IP = "10.0.0.5"
ETCD_DNS = "etcd-0.example.com"


def master_root(root: Path) -> Path:
    """The files a restore reads before it changes anything, laid out like an RHCOS master,
    with data in the data dir and a live revision so a change to either would show."""
    for rel, text in {
        "etc/kubernetes/manifests/etcd-member.yaml": "kind: Pod\n",
        "etc/kubernetes/manifests/kube-apiserver-pod.yaml": "kind: Pod\n",
        "etc/kubernetes/static-pod-resources/kube-apiserver-pod-7/secrets/x": "live\n",
        "run/etcd/environment": f"ETCD_IPV4_ADDRESS={ETCD_IP}\nETCD_DNS_NAME={ETCD_DNS}\n",
        "var/lib/etcd/member/snap/db": "the live data\n",
        "home/core/.keep": "",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def backup_set(directory: Path, *, snapshot: bytes | None = None,
               archive: Path | None = None, timestamp: str = TIMESTAMP) -> Path:
    """`snapshot_<ts>.db` and `static_kuberesources_<ts>.tar.gz` in `directory`; a good one
    of each unless given."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"snapshot_{timestamp}.db").write_bytes(
        with_trailer(bolt_db()) if snapshot is None else snapshot)
    target = directory / f"static_kuberesources_{timestamp}.tar.gz"
    if archive is None:
        good(target)
    else:
        target.write_bytes(archive.read_bytes())
    return directory
