"""Hostile and broken INITIAL_CLUSTER values: parsed structurally, this host found by
address, never by regex; a bad value makes `restore` exit 3 naming it, with the host as it
was."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.reliability.hostile import ETCD_DNS, ETCD_IP, backup_set, master_root, refused
from toolbox.errors import InvalidInput
from toolbox.etcd.cluster import find_local_entry, parse_initial_cluster, render_initial_cluster
from toolbox.pki import certs

pytestmark = pytest.mark.hostile("initial-cluster")
EMPTY = ("INITIAL_CLUSTER is empty: neither --initial-cluster nor the environment variable "
         "INITIAL_CLUSTER gives one")


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("", EMPTY, id="empty"),
    pytest.param("  ", EMPTY, id="blank"),
    pytest.param("a=https://h:2380,a=https://g:2380", "names a more than once",
                 id="duplicate-names"),
    pytest.param("a=https://h:2380,b=https://h:2380", "gives peer URL https://h:2380 to two",
                 id="duplicate-urls"),
    pytest.param("a", "'a' is not NAME=URL", id="missing-equals"),
    pytest.param("a=https://h:2380,b", "'b' is not NAME=URL", id="missing-equals-second"),
    pytest.param("=https://h:2380", "is not NAME=URL", id="no-name"),
    pytest.param("a=", "is not NAME=URL", id="no-url"),
    pytest.param("a=http://h:2380", "must be https", id="http"),
    pytest.param("a=h:2380", "must be https", id="no-scheme"),
    pytest.param("a=https://h", "must be https", id="no-port"),
    pytest.param("a=https://h:notaport", "must be https", id="bad-port"),
    pytest.param("a=https://h:99999", "must be https", id="port-out-of-range"),
    pytest.param("a=https://h:2380/path", "must be https", id="path"),
    pytest.param("a=https://h:2380?x=1", "must be https", id="query"),
    pytest.param("a=https://user@h:2380", "must be https", id="userinfo"),
    pytest.param("a=https://fd00::1:2380", "must be https", id="ipv6-without-brackets"),
    pytest.param("a=https://[fd00::1]", "must be https", id="ipv6-without-port"),
    pytest.param("a=https://10.0.0.9:2380,b=https://10.0.0.8:2380",
                 f"this host ({ETCD_IP}, {ETCD_DNS}) is not in INITIAL_CLUSTER",
                 id="this-host-absent"),
    pytest.param(f"a=https://{ETCD_IP}:2380,b=https://{ETCD_IP}:2381",
                 "this host matches several INITIAL_CLUSTER entries: a, b",
                 id="this-host-twice"),
    # Issue 13, item 5: mistakes that passed, and messages that misled.
    pytest.param(f"a=https://{ETCD_IP}:2379",
                 f"is 'https://{ETCD_IP}:2379': 2379 is etcd's client port; peers use 2380",
                 id="client-port"),
    pytest.param(f"a=https://{ETCD_IP}:2380 b=https://10.0.0.6:2380",
                 f"entry 'a=https://{ETCD_IP}:2380 b=https://10.0.0.6:2380' contains a "
                 "space: entries are separated by commas only", id="space-between-entries"),
    pytest.param(f"a=https://{ETCD_IP}:2380;b=https://10.0.0.6:2380",
                 "contains ';': entries are separated by commas only",
                 id="semicolon-between-entries"),
    pytest.param(f"a=https://{ETCD_IP}:2380\tb=https://10.0.0.6:2380",
                 "contains '\\t': entries are separated by commas only",
                 id="tab-between-entries"),
    pytest.param(f"a=https://{ETCD_IP}:2380,", f"INITIAL_CLUSTER 'a=https://{ETCD_IP}:2380,' "
                 "has an empty entry (a comma at the start or end, or two commas together)",
                 id="trailing-comma"),
    pytest.param(f",a=https://{ETCD_IP}:2380", "has an empty entry", id="leading-comma"),
    pytest.param(f"a=https://{ETCD_IP}:2380,,b=https://10.0.0.6:2380", "has an empty entry",
                 id="double-comma"),
    # Issue 13, item 4: every host resolved (the real resolver: /etc/hosts, then DNS).
    pytest.param(f"a=https://{ETCD_IP}:2380,b=https://etcd-1.cluster.invalid:2380",
                 "the host etcd-1.cluster.invalid of INITIAL_CLUSTER entry "
                 "b=https://etcd-1.cluster.invalid:2380 does not resolve", id="unresolvable"),
    pytest.param(f"a=https://{ETCD_IP}:2380,b=https://localhost:2380,c=https://127.0.0.1:2380",
                 "entries b=https://localhost:2380 and c=https://127.0.0.1:2380 both reach "
                 "127.0.0.1:2380", id="two-names-one-address"),
])
def test_restore_refuses_a_bad_initial_cluster(run_cli, tmp_path, monkeypatch,  # type: ignore[no-untyped-def]
                                               text: str, message: str) -> None:
    monkeypatch.delenv("INITIAL_CLUSTER", raising=False)  # "" must not fall back to it
    host = master_root(tmp_path / "host")
    backup_set(host / "home/core/backup")
    err = refused(run_cli, host, ["restore", "/home/core/backup", "--initial-cluster", text,
                                  "--dry-run"], 3).stderr
    assert message in err


def test_the_flag_left_out_names_the_flag_and_the_variable(run_cli, tmp_path,  # type: ignore[no-untyped-def]
                                                          monkeypatch) -> None:
    monkeypatch.delenv("INITIAL_CLUSTER", raising=False)
    host = master_root(tmp_path / "host")
    backup_set(host / "home/core/backup")
    err = refused(run_cli, host, ["restore", "/home/core/backup", "--dry-run"], 3).stderr
    assert EMPTY in err and "--initial-cluster NAME=https://HOST:2380" in err


def kubelet_of_node(host: Path, node: str) -> None:
    """The kubelet's client certificate (CN=system:node:<node>), behind the -current
    symlink with an absolute target, as on RHCOS."""
    ca = certs.self_signed_ca("kube-csr-signer")
    pair = certs.issue(ca, common_name=f"system:node:{node}", organizations=["system:nodes"],
                       server=False)
    pki = host / "var/lib/kubelet/pki"
    pki.mkdir(parents=True)
    (pki / "kubelet-client-2020-04-17-17-09-28.pem").write_bytes(pair.cert_pem() +
                                                                 pair.key_pem())
    (pki / "kubelet-client-current.pem").symlink_to(
        "/var/lib/kubelet/pki/kubelet-client-2020-04-17-17-09-28.pem")


@pytest.mark.parametrize("option", [[], ["--name", "etcd-member-master0"]])
def test_a_member_name_that_is_not_this_nodes_is_refused(run_cli, tmp_path,  # type: ignore[no-untyped-def]
                                                         option: list[str]) -> None:
    # etcd-member-master0 for etcd-member-master-0: the pod, and so etcd, is the latter.
    host = master_root(tmp_path / "host")
    backup_set(host / "home/core/backup")
    kubelet_of_node(host, "master-0")
    err = refused(run_cli, host, ["restore", "/home/core/backup", "--initial-cluster",
                                  f"etcd-member-master0=https://{ETCD_IP}:2380", *option,
                                  "--dry-run"], 3).stderr
    assert ("this host's INITIAL_CLUSTER entry is named 'etcd-member-master0', but node "
            "master-0's etcd member is 'etcd-member-master-0'") in err


def test_greedy_regex_case_of_bz_1826021() -> None:
    # Names that contain the DNS names made the 4.3 pattern return two names.
    text = ("etcd-0.example.com=https://etcd-0.example.com:2380,"
            "etcd-1.example.com=https://etcd-1.example.com:2380,"
            "etcd-2.example.com=https://etcd-2.example.com:2380")
    entries = parse_initial_cluster(text)
    assert find_local_entry(entries, {"etcd-1.example.com", "10.0.0.6"}).name == \
        "etcd-1.example.com"


def test_substring_of_a_name_does_not_match() -> None:
    entries = parse_initial_cluster("a=https://etcd-10.example.com:2380")
    with pytest.raises(InvalidInput, match="not in INITIAL_CLUSTER"):
        find_local_entry(entries, {"etcd-1.example.com"})


def test_ipv6_peer_urls_parse_and_match_in_any_spelling() -> None:
    entries = parse_initial_cluster("a=https://10.0.0.5:2380,b=https://[fd00::1]:2380")
    assert entries[1].host == "fd00::1"
    for spelling in ("fd00::1", "FD00::1", "fd00:0:0:0:0:0:0:1", "[fd00::1]"):
        assert find_local_entry(entries, {spelling}).name == "b"
    with pytest.raises(InvalidInput, match="not in INITIAL_CLUSTER"):
        find_local_entry(entries, {"fd00::10"})


@pytest.mark.parametrize("text", [
    pytest.param("a=https://[fd00::zz]:2380", id="bad-ipv6-address"),
    pytest.param("a=https://[fd00::1:2380", id="unclosed-bracket"),
])
def test_a_malformed_ipv6_host_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="must be https"):
        parse_initial_cluster(text)


def test_a_fragment_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must be https"):
        parse_initial_cluster("a=https://h:2380#x")


@pytest.mark.parametrize("text", [
    pytest.param("a=https://[fd00::1]:2380,b=https://[fd00:0::1]:2380", id="ipv6-spellings"),
    pytest.param("a=https://etcd-0.example.com:2380,b=https://ETCD-0.example.com:2380",
                 id="dns-case"),
])
def test_the_same_peer_url_in_two_spellings_is_a_duplicate(text: str) -> None:
    with pytest.raises(InvalidInput, match="to two members"):
        parse_initial_cluster(text)


@given(st.text(max_size=60))
def test_arbitrary_text_raises_nothing_but_invalid_input(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        parse_initial_cluster(text)


# Names: any printable text without the separators (the parser strips the ends of entries).
names = st.text(st.characters(blacklist_characters=",=",
                              blacklist_categories=("Cs", "Cc", "Z")), min_size=1, max_size=20)
dns_hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,10}"
                          r"[a-z0-9])?){0,3}", fullmatch=True)
hosts = st.one_of(dns_hosts, st.ip_addresses().map(str))


def _canonical(host: str) -> str:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).compressed
    return host


@given(st.lists(names, min_size=1, max_size=5, unique=True),
       st.lists(st.tuples(hosts, st.integers(1, 65535).filter(lambda p: p != 2379)),
                min_size=5, max_size=5,
                unique_by=lambda hp: _canonical(hp[0])))
def test_well_formed_lists_round_trip_and_find_each_host(member_names: list[str],
                                                         where: list[tuple[str, int]]) -> None:
    # Regex metacharacters and any other text in names are plain text here.
    members = [(name, f"https://{f'[{h}]' if ':' in h else h}:{port}")
               for name, (h, port) in zip(member_names, where, strict=False)]
    text = render_initial_cluster(members)
    entries = parse_initial_cluster(text)
    assert [(e.name, e.peer_url) for e in entries] == members
    assert render_initial_cluster([(e.name, e.peer_url) for e in entries]) == text
    for entry, (h, _) in zip(entries, where, strict=False):
        assert find_local_entry(entries, {h}) == entry
