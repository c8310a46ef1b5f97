"""etcd: the gRPC client, snapshots, and cluster membership text formats."""
