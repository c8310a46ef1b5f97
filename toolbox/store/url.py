"""`s3://BUCKET/PREFIX[/SET]` as the operator types it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from toolbox.errors import InvalidInput

SCHEME = "s3://"
# A backup set's timestamp as strftime writes it: ASCII digits (\d takes any script's), and
# \Z, not $, which also matches before a trailing newline.
_SCHEME_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # https://…, S3://…: typos of s3://
SET_NAME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{6}\Z")
# S3's rules, which Ceph and MinIO share: 3-63 of a-z 0-9 . -, starting and ending alnum.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


@dataclass(frozen=True)
class StoreUrl:
    bucket: str
    prefix: str              # no leading or trailing slash; "" for the bucket's root
    set_name: str | None     # a set's timestamp when the URL names one set

    def __str__(self) -> str:
        return SCHEME + "/".join(p for p in (self.bucket, self.prefix, self.set_name) if p)

    @property
    def location(self) -> StoreUrl:
        """The prefix the sets live under, without the set."""
        return StoreUrl(self.bucket, self.prefix, None)

    def with_set(self, name: str) -> StoreUrl:
        return StoreUrl(self.bucket, self.prefix, name)

    def key(self, set_name: str, file_name: str) -> str:
        return "/".join(p for p in (self.prefix, set_name, file_name) if p)

    @property
    def set_prefix(self) -> str:
        """Where the sets are listed from: PREFIX/ (or the bucket's root)."""
        return f"{self.prefix}/" if self.prefix else ""


def is_store_url(text: str) -> bool:
    """Meant as a store URL: s3://, and its typos (s3:/, S3://, https://) too, so that they
    are refused as URLs rather than taken for host paths."""
    return text.lower().startswith("s3:") or bool(_SCHEME_LIKE.match(text))


def parse_store_url(text: str) -> StoreUrl:
    """`s3://bucket`, `s3://bucket/prefix/…` or `s3://bucket/prefix/2026-12-01_030000`."""
    if not text.startswith(SCHEME):
        raise InvalidInput(f"{text!r} is not an s3:// URL",
                           next_step="give s3://BUCKET/PREFIX, e.g. s3://etcd-backups/prod")
    bucket, _, rest = text[len(SCHEME):].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InvalidInput(f"{bucket!r} in {text} is not a valid bucket name (3-63 characters "
                           "of a-z, 0-9, '.' and '-')",
                           next_step="give s3://BUCKET/PREFIX, e.g. s3://etcd-backups/prod")
    if any(c.isspace() or not c.isprintable() for c in rest):
        # A URL read from a file or a ConfigMap brings its newline: S3 takes it into the key,
        # and the sets would go where no listing of the prefix finds them.
        raise InvalidInput(f"{text!r} has a space or control character in its prefix",
                           next_step="give the prefix without spaces or line ends, e.g. "
                           "s3://etcd-backups/prod")
    parts = [p for p in rest.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidInput(f"{text} has a '.' or '..' segment",
                           next_step="give the prefix as the store lists it")
    set_name = parts.pop() if parts and SET_NAME.match(parts[-1]) else None
    return StoreUrl(bucket, "/".join(parts), set_name)
