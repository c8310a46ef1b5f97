"""Certificates: CAs, issuing, the etcd member profiles, expiry."""
