"""`s3://BUCKET/PREFIX[/SET]` as the operator types it, and the object keys it gives."""

import pytest

from toolbox.errors import InvalidInput
from toolbox.store.url import StoreUrl, is_store_url, parse_store_url

SET = "2026-12-01_030000"


@pytest.mark.parametrize(("text", "bucket", "prefix", "set_name"), [
    ("s3://etcd-backups", "etcd-backups", "", None),
    ("s3://etcd-backups/", "etcd-backups", "", None),
    ("s3://etcd-backups/prod", "etcd-backups", "prod", None),
    ("s3://etcd-backups/prod/", "etcd-backups", "prod", None),
    ("s3://etcd-backups/eu/prod", "etcd-backups", "eu/prod", None),
    (f"s3://etcd-backups/prod/{SET}", "etcd-backups", "prod", SET),
    (f"s3://etcd-backups/prod/{SET}/", "etcd-backups", "prod", SET),
    (f"s3://etcd-backups/{SET}", "etcd-backups", "", SET),
    # Only the last segment names a set: one further in is part of the prefix.
    (f"s3://etcd-backups/{SET}/prod", "etcd-backups", f"{SET}/prod", None),
    ("s3://a.b-c", "a.b-c", "", None),
    ("s3://" + "b" * 63, "b" * 63, "", None),
])
def test_bucket_prefix_and_set(text: str, bucket: str, prefix: str, set_name: str | None
                               ) -> None:
    assert parse_store_url(text) == StoreUrl(bucket, prefix, set_name)


def test_keys_listing_prefix_and_the_url_shown() -> None:
    url = parse_store_url(f"s3://etcd-backups/eu/prod/{SET}/")
    assert str(url) == f"s3://etcd-backups/eu/prod/{SET}"
    assert str(url.location) == "s3://etcd-backups/eu/prod"
    assert url.location.with_set(SET) == url
    assert url.key(SET, "backup.json") == f"eu/prod/{SET}/backup.json"
    assert url.set_prefix == "eu/prod/"
    root = parse_store_url("s3://etcd-backups")
    assert (str(root), root.set_prefix, root.key(SET, "x")) == ("s3://etcd-backups", "",
                                                                f"{SET}/x")


@pytest.mark.parametrize(("text", "said"), [
    ("etcd-backups/prod", "is not an s3:// URL"),
    ("S3://etcd-backups/prod", "is not an s3:// URL"),
    ("https://s3.example.com/etcd-backups", "is not an s3:// URL"),
    ("s3://", "not a valid bucket name"),
    ("s3:///prod", "not a valid bucket name"),
    ("s3://ab", "not a valid bucket name"),
    ("s3://" + "b" * 64, "not a valid bucket name"),
    ("s3://Etcd-Backups", "not a valid bucket name"),
    ("s3://etcd_backups", "not a valid bucket name"),
    ("s3://-etcd", "not a valid bucket name"),
    ("s3://etcd-", "not a valid bucket name"),
    ("s3://etcd..backups", "not a valid bucket name"),
    ("s3://etcd-backups:443/prod", "not a valid bucket name"),
    ("s3://etcd-backups/../other", "'.' or '..' segment"),
    ("s3://etcd-backups/prod/./x", "'.' or '..' segment"),
    # A URL read from a file or a ConfigMap keeps its newline; S3 would take it as part of
    # a key, so the sets would go to a prefix nobody lists.
    ("s3://etcd-backups\n", "not a valid bucket name"),
    ("s3://etcd-backups/prod\n", "space or control character"),
    (f"s3://etcd-backups/prod/{SET}\n", "space or control character"),
    ("s3://etcd-backups/my prod", "space or control character"),
    ("s3://etcd-backups/prod\t/x", "space or control character"),
])
def test_refused(text: str, said: str) -> None:
    with pytest.raises(InvalidInput, match=said) as refused:
        parse_store_url(text)
    assert refused.value.next_step.startswith("give ")


def test_a_set_name_is_ascii_digits_only() -> None:
    # Python's \d also matches other scripts' digits; a set's name is what strftime writes.
    arabic = "٢٠٢٦-١٢-٠١_٠٣٠٠٠٠"
    assert parse_store_url(f"s3://etcd-backups/prod/{arabic}") == \
        StoreUrl("etcd-backups", f"prod/{arabic}", None)


def test_is_store_url() -> None:
    assert is_store_url("s3://b/p")
    assert not is_store_url("/home/core/backup")
    assert not is_store_url("/home/core/s3://x")
