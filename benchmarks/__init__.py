"""Benchmarks: ocp-recovery against etcdctl/etcdutl, measured in the same run."""
