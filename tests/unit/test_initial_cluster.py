"""INITIAL_CLUSTER: parsed structurally, this host found by address, never by regex."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import InvalidInput
from toolbox.etcd.cluster import find_local_entry, parse_initial_cluster


def test_greedy_regex_case_of_bz_1826021() -> None:
    # Names that contain the DNS names made the 4.3 pattern return two names.
    text = ("etcd-0.example.com=https://etcd-0.example.com:2380,"
            "etcd-1.example.com=https://etcd-1.example.com:2380,"
            "etcd-2.example.com=https://etcd-2.example.com:2380")
    entries = parse_initial_cluster(text)
    assert find_local_entry(entries, {"etcd-1.example.com", "10.0.0.6"}).name == \
        "etcd-1.example.com"


def test_match_by_ip_and_ipv6_spelling() -> None:
    entries = parse_initial_cluster("a=https://10.0.0.5:2380,b=https://[2001:db8::0001]:2380")
    assert find_local_entry(entries, {"10.0.0.5"}).name == "a"
    assert find_local_entry(entries, {"2001:db8:0:0:0:0:0:1"}).name == "b"


def test_dns_name_case_and_trailing_dot() -> None:
    entries = parse_initial_cluster("m=https://ETCD-0.Example.com.:2380")
    assert find_local_entry(entries, {"etcd-0.example.com"}).name == "m"


def test_substring_of_a_name_does_not_match() -> None:
    entries = parse_initial_cluster("a=https://etcd-10.example.com:2380")
    with pytest.raises(InvalidInput, match="not in INITIAL_CLUSTER"):
        find_local_entry(entries, {"etcd-1.example.com"})


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("  ", "empty"),
    ("a=https://h:2380,a=https://g:2380", "more than once"),
    ("a=https://h:2380,b=https://h:2380", "two members"),
    ("a", "not NAME=URL"),
    ("=https://h:2380", "not NAME=URL"),
    ("a=", "not NAME=URL"),
    ("a=http://h:2380", "must be https"),
    ("a=https://h", "must be https"),
    ("a=https://h:notaport", "must be https"),
    ("a=https://h:2380/path", "must be https"),
    ("a=https://user@h:2380", "must be https"),
])
def test_bad_initial_cluster(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_initial_cluster(text)


names = st.from_regex(r"[a-z0-9][a-z0-9.\-\[\]()*+?^$|]{0,20}", fullmatch=True)


@given(st.lists(names, min_size=1, max_size=5, unique=True))
def test_any_names_round_trip_and_find_their_host(member_names: list[str]) -> None:
    # Regex metacharacters in names are plain text here.
    text = ",".join(f"{n}=https://10.0.0.{i + 1}:2380" for i, n in enumerate(member_names))
    entries = parse_initial_cluster(text)
    assert [e.name for e in entries] == member_names
    for i, name in enumerate(member_names):
        assert find_local_entry(entries, {f"10.0.0.{i + 1}"}).name == name


@given(st.text(max_size=60))
def test_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        parse_initial_cluster(text)
