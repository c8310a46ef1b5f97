"""INITIAL_CLUSTER: this host found by address in any spelling. (Hostile and broken values:
tests/reliability/test_hostile_initial_cluster.py.)"""

from toolbox.etcd.cluster import find_local_entry, parse_initial_cluster


def test_match_by_ip_and_ipv6_spelling() -> None:
    entries = parse_initial_cluster("a=https://10.0.0.5:2380,b=https://[2001:db8::0001]:2380")
    assert find_local_entry(entries, {"10.0.0.5"}).name == "a"
    assert find_local_entry(entries, {"2001:db8:0:0:0:0:0:1"}).name == "b"


def test_dns_name_case_and_trailing_dot() -> None:
    entries = parse_initial_cluster("m=https://ETCD-0.Example.com.:2380")
    assert find_local_entry(entries, {"etcd-0.example.com"}).name == "m"
