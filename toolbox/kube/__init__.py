"""The Kubernetes API: kubeconfigs, a small REST client, and what the procedures read."""
