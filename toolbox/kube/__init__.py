"""The Kubernetes API: the `kubernetes` client loaded from host-path kubeconfigs, the
kubeconfigs we write, and what the procedures read (CSR verdicts, static pod manifests)."""
