"""Simulated OpenShift 4.3 masters on one machine, with real etcd, for drills and tests."""
