"""kubelet (systemctl), static pods and containers (crictl): every call through the one
executor, every wait bounded and saying what it waited for."""

from __future__ import annotations

import re

from toolbox import log
from toolbox.errors import CommandFailed
from toolbox.host.exec import Executor
from toolbox.waiting import wait_until

_log = log.get(__name__)
KUBELET = "kubelet.service"


class Runtime:
    def __init__(self, executor: Executor):
        self.exec = executor

    def kubelet_active(self) -> bool:
        done = self.exec.run_host(["systemctl", "is-active", KUBELET], ok_codes=(0, 3, 4))
        return done.returncode == 0

    def stop_kubelet(self) -> None:
        self.exec.run_host(["systemctl", "stop", KUBELET])

    def start_kubelet(self) -> None:
        self.exec.run_host(["systemctl", "daemon-reload"])
        self.exec.run_host(["systemctl", "start", KUBELET])

    def ready_pods(self, name: str) -> list[str]:
        """Ready pod sandboxes whose name matches `name` (crictl's regex filter), e.g.
        `etcd-member` matches `etcd-member-<node>`."""
        done = self.exec.run_host(["crictl", "pods", "--name", name, "--state", "Ready",
                                   "-q"])
        return done.stdout.split()

    def running_containers(self) -> list[str]:
        return self.exec.run_host(["crictl", "ps", "-q"]).stdout.split()

    def wait_pod_stopped(self, name: str, timeout: float) -> None:
        wait_until(lambda: not self.ready_pods(name), timeout=timeout,
                   what=f"the {name} pod to stop (manifest moved out of "
                   "/etc/kubernetes/manifests)",
                   next_step=f"check `crictl pods --name {name}` on the host and the kubelet "
                   "log, then `ocp-recovery resume`")

    def stop_all_containers(self, timeout: float) -> None:
        """Stop every container on the host, re-listing until none runs; a container
        that vanished between list and stop is not an error (BZ 1770273)."""

        def all_stopped() -> bool:
            ids = self.running_containers()
            if not ids:
                return True
            try:
                self.exec.run_host(["crictl", "stop", *ids])
            except CommandFailed as exc:
                if not re.search(r"not found|NotFound", exc.stderr):
                    raise
            return not self.running_containers()

        wait_until(all_stopped, timeout=timeout, what="every container on the host to stop",
                   next_step="check `crictl ps` on the host, stop what is left, then "
                   "`ocp-recovery resume`")
