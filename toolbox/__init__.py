"""ocp-recovery: back up etcd and recover an OpenShift 4.3 control plane."""

__version__ = "0.1.0"
