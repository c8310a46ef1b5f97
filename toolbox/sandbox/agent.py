"""The node agent of one sandbox master: it plays kubelet and CRI-O.

As kubelet it runs the static pods of `etc/kubernetes/manifests` while "kubelet" is active:
`etcd-member.yaml` as a real etcd, configured the way the 4.3 pod's shell did (the discovery
init step rewrites `/run/etcd/environment` keeping only ETCD_INITIAL_CLUSTER and
ETCD_INITIAL_CLUSTER_STATE; then `source` the env file, `set -a; source etcd.conf` and
`exec etcd` with the manifest's own flags); a `hyperkube kube-apiserver --openshift-config=…`
container as a real kube-apiserver when the sandbox has one (master.json `kube_apiserver`),
its OpenShift config turned into upstream flags (`apiserver.py`); a `hyperkube
kube-controller-manager --kubeconfig=…` (or `kube-scheduler`) container as a real one when the
sandbox has that binary (master.json `kube_controller_manager`, `kube_scheduler`); every other
container as a
placeholder process.
As CRI-O it keeps containers running when kubelet stops, and answers the `crictl` and
`systemctl` shims over a unix socket, so the toolbox's real executor path is what runs.

    python -m toolbox.sandbox.agent MASTER_DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from toolbox.etcd.cluster import CARRIED_OVER, parse_env_file
from toolbox.host.files import atomic_write
from toolbox.kube import config as kubeconfig
from toolbox.sandbox import apiserver
from toolbox.sandbox.layout import MasterSpec, etcd_environment

RECONCILE_SECONDS = 0.1
STOP_GRACE_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 5.0
UNREADABLE_RETRY_SECONDS = 1.0  # what it reads may be written after the manifest


def socket_name(master_dir: Path) -> str:
    """An abstract unix socket (no path-length limit, nothing left on disk)."""
    digest = hashlib.sha256(str(master_dir.resolve()).encode()).hexdigest()[:24]
    return f"\0ocp-recovery-sandbox-{digest}"


@dataclass
class Container:
    id: str
    name: str
    pod: Pod
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    attempt: int = 0
    next_start: float = 0.0
    stopped_by_cri: bool = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Pod:
    id: str
    name: str
    manifest: str
    digest: str
    created: float
    containers: list[Container] = field(default_factory=list)


class Agent:
    def __init__(self, master_dir: Path):
        self.dir = master_dir
        info = json.loads((master_dir / "master.json").read_text())
        self.spec = MasterSpec(int(info["index"]))
        self.root = Path(info["root"])
        self.etcd_binary = info["etcd"]
        self.kube_apiserver: str | None = info.get("kube_apiserver")
        # Components run from a kubeconfig: `hyperkube NAME --kubeconfig=…` -> their binary.
        self.kubeconfig_components: dict[str, str] = {
            name: info[key]
            for name, key in (("kube-controller-manager", "kube_controller_manager"),
                              ("kube-scheduler", "kube_scheduler"))
            if info.get(key)}
        self.etcd_on_localhost = bool(info.get("etcd_on_localhost"))
        self.kubelet_active = True
        self.pods: dict[str, Pod] = {}
        # manifest -> (digest, error, when to try again): a broken pod is logged once.
        self.unreadable: dict[str, tuple[str, str, float]] = {}
        self.lock = threading.RLock()
        self.logs = master_dir / "logs"
        self.logs.mkdir(exist_ok=True)

    # ---- kubelet -------------------------------------------------------------------
    def reconcile(self) -> None:
        with self.lock:
            if not self.kubelet_active:
                return
            wanted = self._manifests()
            for manifest, pod in list(self.pods.items()):
                if wanted.get(manifest) != pod.digest:
                    self._remove_pod(manifest)
            now = time.monotonic()
            for manifest in [m for m in self.unreadable if m not in wanted]:
                del self.unreadable[manifest]
            for manifest, digest in wanted.items():
                digest_then, _, retry = self.unreadable.get(manifest, ("", "", 0.0))
                if manifest not in self.pods and (digest != digest_then or now >= retry):
                    self._create_pod(manifest, digest)
            for pod in self.pods.values():
                for c in pod.containers:
                    if not c.running and now >= c.next_start:
                        self._start(c)

    def _manifests(self) -> dict[str, str]:
        found = {}
        directory = self.root / "etc/kubernetes/manifests"
        if directory.is_dir():
            for f in sorted(directory.iterdir()):
                if f.is_file() and f.suffix in (".yaml", ".yml", ".json"):
                    found[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
        return found

    def _create_pod(self, manifest: str, digest: str) -> None:
        path = self.root / "etc/kubernetes/manifests" / manifest
        try:
            doc = yaml.safe_load(path.read_text())
            pod = Pod(secrets.token_hex(6), f"{doc['metadata']['name']}-{self.spec.node_name}",
                      manifest, digest, time.time())
            for spec in doc["spec"].get("containers", []):
                argv, env = self._container_command(doc, spec, pod.name)
                pod.containers.append(Container(secrets.token_hex(6), spec["name"], pod, argv,
                                                env))
        except Exception as exc:  # a broken manifest is skipped, as kubelet does
            error = f"{type(exc).__name__}: {exc}"
            if self.unreadable.get(manifest, ("", ""))[:2] != (digest, error):
                self._say(f"manifest {manifest} unreadable: {error}")
            self.unreadable[manifest] = (digest, error,
                                         time.monotonic() + UNREADABLE_RETRY_SECONDS)
            return
        self.unreadable.pop(manifest, None)
        self.pods[manifest] = pod
        self._say(f"pod {pod.name} created from {manifest}")

    def _remove_pod(self, manifest: str) -> None:
        pod = self.pods.pop(manifest)
        for c in pod.containers:
            self._stop(c, STOP_GRACE_SECONDS)
        self._say(f"pod {pod.name} removed")

    def _container_command(self, doc: dict[str, Any], spec: dict[str, Any],
                           pod_name: str) -> tuple[list[str], dict[str, str]]:
        if doc["metadata"]["name"] == "etcd-member" and spec["name"] == "etcd-member":
            return self._etcd_command(doc, spec, pod_name)
        if (spec.get("command") or [""])[0] == "etcd":
            # Another pod's etcd (`snapshot browse`): the sandbox's binary, paths mapped.
            mounts = self._mounts(doc, spec)
            return ([self.etcd_binary, *(self._map(w, mounts) for w in spec["command"][1:])],
                    {"PATH": "/usr/bin:/bin"})
        if self.kube_apiserver and apiserver.is_kube_apiserver(spec):
            return self._kube_apiserver_command(doc, spec, self.kube_apiserver)
        component = _kubeconfig_component(spec)
        if component in self.kubeconfig_components:
            return self._kubeconfig_component_command(doc, spec, component)
        return ["sleep", "2147483647"], {"PATH": "/usr/bin:/bin"}

    def _kubeconfig_component_command(self, doc: dict[str, Any], spec: dict[str, Any],
                                      component: str) -> tuple[list[str], dict[str, str]]:
        """The container's flags, mapped through its mounts. Its kubeconfig names files by
        their in-pod paths too: a copy with them mapped, in the agent's own directory, is
        what it gets. Raises (the pod is then skipped like an unreadable manifest) when the
        kubeconfig cannot be read."""
        mounts = self._mounts(doc, spec)
        argv = [self.kubeconfig_components[component]]
        for arg in [str(a) for a in spec.get("args") or []]:
            flag, _, value = arg.partition("=")
            argv.append(f"{flag}={self._mapped_kubeconfig(value, mounts, component)}"
                        if flag in KUBECONFIG_FLAGS else self._map(arg, mounts))
        return argv, {"PATH": "/usr/bin:/bin"}

    def _mapped_kubeconfig(self, in_pod: str, mounts: list[tuple[str, Path]],
                           component: str) -> Path:
        doc = kubeconfig.read(Path(self._map(in_pod, mounts)),
                              lambda path: Path(self._map(path, mounts)), shown=in_pod)
        copy = self.dir / component / "kubeconfig"
        copy.parent.mkdir(mode=0o700, exist_ok=True)
        atomic_write(copy, yaml.safe_dump(doc).encode(), 0o600)
        return copy

    def _kube_apiserver_command(self, doc: dict[str, Any], spec: dict[str, Any], binary: str
                                ) -> tuple[list[str], dict[str, str]]:
        """The OpenShift config the container names, read through its mounts, as flags.
        Raises (the pod is then skipped like an unreadable manifest) when it cannot be."""
        mounts = self._mounts(doc, spec)
        config_path = self._map(str(apiserver.openshift_config_arg(spec)), mounts)
        try:
            config = yaml.safe_load(Path(config_path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise apiserver.ConfigError(f"kube-apiserver config {config_path}: {exc}") from exc
        argv = apiserver.kube_apiserver_argv(
            binary, config, lambda p: self._map(p, mounts), self.dir / "kube-apiserver",
            extra=apiserver.extra_args(spec), known_flags=apiserver.binary_flags(binary),
            say=self._say)
        return argv, {"PATH": "/usr/bin:/bin"}

    def _etcd_command(self, doc: dict[str, Any], spec: dict[str, Any],
                      pod_name: str) -> tuple[list[str], dict[str, str]]:
        self._discovery_init()
        mounts = self._mounts(doc, spec)
        env_file = parse_env_file((self.root / "run/etcd/environment").read_text())
        conf = parse_env_file((self.root / "etc/etcd/etcd.conf").read_text()).merged()
        container_env = {}
        for item in spec.get("env", []):
            if "value" in item:
                container_env[item["name"]] = self._map(item["value"], mounts)
            elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == \
                    "metadata.name":
                container_env[item["name"]] = pod_name
        process_env = {"PATH": "/usr/bin:/bin", **container_env, **env_file.exported, **conf}
        shell_vars = {**container_env, **env_file.merged(), **conf}
        script = spec["command"][-1]
        exec_line = script[script.index("exec etcd"):].replace("\\\n", " ")
        words = shlex.split(exec_line)[2:]
        argv = [self.etcd_binary]
        for word in words:
            expanded = re.sub(r"\$\{(\w+)\}", lambda m: shell_vars.get(m.group(1), ""), word)
            argv.append(self._map(expanded, mounts))
        return argv, process_env

    def _discovery_init(self) -> None:
        """setup-etcd-environment: keep the cluster settings, rewrite the rest."""
        path = self.root / "run/etcd/environment"
        old_text = path.read_text() if path.exists() else None
        old = parse_env_file(old_text) if old_text is not None else None
        carried = {k: old.get(k) for k in CARRIED_OVER} if old else {}
        text = etcd_environment(self.spec, carried.get("ETCD_INITIAL_CLUSTER"),
                                carried.get("ETCD_INITIAL_CLUSTER_STATE"),
                                on_localhost=self.etcd_on_localhost).render()
        # The toolbox and the tests read this file while pods restart: never show them a
        # truncated one, and leave an unchanged one alone.
        if text != old_text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text.encode(), 0o644)
        for kind in ("server", "peer", "metric"):
            stem = f"system:etcd-{kind}:{self.spec.dns_name}"
            member = self.root / "etc/kubernetes/static-pod-resources/etcd-member"
            if not (member / f"{stem}.crt").exists():
                self._say(f"certs init: {stem}.crt missing (no signer in the sandbox); "
                          "etcd will not start until it exists")

    def _mounts(self, doc: dict[str, Any], spec: dict[str, Any]) -> list[tuple[str, Path]]:
        host_paths = {v["name"]: v["hostPath"]["path"] for v in doc["spec"].get("volumes", [])
                      if "hostPath" in v}
        mounts = []
        for m in spec.get("volumeMounts", []):
            if m["name"] in host_paths:
                mounts.append((m["mountPath"].rstrip("/"),
                               self.root / host_paths[m["name"]].strip("/")))
        return sorted(mounts, key=lambda m: -len(m[0]))

    @staticmethod
    def _map(word: str, mounts: list[tuple[str, Path]]) -> str:
        """A container path (alone or after `--flag=`) -> where its hostPath volume is."""
        flag, sep, value = word.partition("=") if word.startswith("-") else ("", "", word)
        for mount_path, local in mounts:
            if value == mount_path or value.startswith(mount_path + "/"):
                return flag + sep + str(local) + value[len(mount_path):]
        return word

    def _start(self, c: Container) -> None:
        log = open(self.logs / f"{c.pod.name}_{c.name}.log", "ab")  # noqa: SIM115
        try:
            c.proc = subprocess.Popen(c.argv, env=c.env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.root)
        except OSError as exc:
            self._say(f"container {c.name} cannot start: {exc}")
        finally:
            log.close()
        c.attempt += 1
        c.started = time.monotonic()
        c.stopped_by_cri = False
        c.next_start = c.started + min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(c.attempt, 4))

    @staticmethod
    def _stop(c: Container, grace: float) -> None:
        if c.proc is None:
            return
        if c.proc.poll() is None:
            c.proc.terminate()
            try:
                c.proc.wait(grace)
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
        c.stopped_by_cri = True

    # ---- CRI-O and systemd, for the shims -----------------------------------------
    def handle(self, tool: str, argv: list[str]) -> tuple[int, str, str]:
        with self.lock:
            if tool == "systemctl":
                return self._systemctl(argv)
            if tool == "crictl":
                return self._crictl(argv)
        return 1, "", f"unknown tool {tool}\n"

    def _systemctl(self, argv: list[str]) -> tuple[int, str, str]:
        args = [a for a in argv if not a.startswith("-")]
        if not args:
            return 1, "", "systemctl: missing verb\n"
        verb, units = args[0], [u.removesuffix(".service") for u in args[1:]]
        if verb == "daemon-reload":
            return 0, "", ""
        if any(u != "kubelet" for u in units) or not units:
            return 5, "", f"Unit {(units or ['?'])[0]}.service not loaded (sandbox).\n"
        if verb == "stop":
            self.kubelet_active = False
        elif verb == "start" or verb == "restart":
            self.kubelet_active = True
        elif verb == "is-active":
            state = "active" if self.kubelet_active else "inactive"
            return (0 if self.kubelet_active else 3), state + "\n", ""
        else:
            return 1, "", f"systemctl {verb}: not supported by the sandbox\n"
        self._say(f"systemctl {verb} kubelet")
        return 0, "", ""

    def _crictl(self, argv: list[str]) -> tuple[int, str, str]:
        if not argv:
            return 1, "", "crictl: missing command\n"
        command, opts, rest = argv[0], _options(argv[1:]), _positional(argv[1:])
        if command == "ps":
            return self._crictl_ps(opts)
        if command == "pods":
            return self._crictl_pods(opts)
        if command == "stop":
            return self._crictl_stop(rest, float(opts.get("timeout", opts.get("t", "10"))))
        return 1, "", f"crictl {command}: not supported by the sandbox\n"

    def _crictl_ps(self, opts: dict[str, str]) -> tuple[int, str, str]:
        state = opts.get("state", "").lower()
        rows = []
        for pod in self.pods.values():
            for c in pod.containers:
                running = c.running
                cstate = "Running" if running else "Exited"
                if "all" not in opts and "a" not in opts and not state and not running:
                    continue
                if state and cstate.lower() != state:
                    continue
                if "name" in opts and not re.search(opts["name"], c.name):
                    continue
                if "pod" in opts and not pod.id.startswith(opts["pod"]):
                    continue
                rows.append((c, cstate))
        if "q" in opts or "quiet" in opts:
            return 0, "".join(f"{c.id}\n" for c, _ in rows), ""
        lines = ["CONTAINER      STATE     NAME                ATTEMPT   POD ID         POD"]
        lines += [f"{c.id:<14} {s:<9} {c.name:<19} {c.attempt - 1:<9} {c.pod.id:<14} "
                  f"{c.pod.name}" for c, s in rows]
        return 0, "\n".join(lines) + "\n", ""

    def _crictl_pods(self, opts: dict[str, str]) -> tuple[int, str, str]:
        state = opts.get("state", "").lower()
        rows = [p for p in self.pods.values()
                if (not state or state == "ready")
                and ("name" not in opts or re.search(opts["name"], p.name))]
        if "q" in opts or "quiet" in opts:
            return 0, "".join(f"{p.id}\n" for p in rows), ""
        lines = ["POD ID         STATE     NAME"]
        lines += [f"{p.id:<14} Ready     {p.name}" for p in rows]
        return 0, "\n".join(lines) + "\n", ""

    def _crictl_stop(self, ids: list[str], grace: float) -> tuple[int, str, str]:
        out, err, rc = [], [], 0
        by_id = {c.id: c for p in self.pods.values() for c in p.containers}
        for cid in ids:
            c = by_id.get(cid)
            if c is None:
                rc = 1
                err.append(f'stopping the container "{cid}": container not found\n')
                continue
            self._stop(c, grace)
            # kubelet, if active, restarts it after its back-off, as a real one would.
            c.next_start = time.monotonic() + MAX_BACKOFF_SECONDS
            out.append(f"{cid}\n")
        return rc, "".join(out), "".join(err)

    # ---- plumbing ------------------------------------------------------------------
    def _say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {self.spec.node_name}: {text}", flush=True)

    def serve(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(socket_name(self.dir))
        server.listen(16)
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        (self.dir / "agent.pid").write_text(str(os.getpid()))
        self._say("agent up")
        while True:
            try:
                self.reconcile()
            except Exception as exc:  # the agent must outlive one bad reconcile
                self._say(f"reconcile failed: {exc!r}")
            time.sleep(RECONCILE_SECONDS)

    def _accept(self, server: socket.socket) -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        """One shim call: `tool\\0arg\\0…` until the shim shuts its side; `rc\\0out\\0err` back."""
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            tool, *argv = [os.fsdecode(word) for word in data.split(b"\0")]
            rc, out, err = self.handle(tool, argv)
            conn.sendall(b"\0".join([str(rc).encode(), out.encode(), err.encode()]))

    def shutdown(self, *_: object) -> None:
        with self.lock:
            for pod in self.pods.values():
                for c in pod.containers:
                    self._stop(c, STOP_GRACE_SECONDS)
        sys.exit(0)


def _kubeconfig_component(container: dict[str, Any]) -> str | None:
    """NAME of a `hyperkube NAME` container given a kubeconfig (the layout's placeholders
    have none)."""
    command = [str(c) for c in container.get("command") or []]
    if len(command) == 2 and command[0] == "hyperkube" and \
            any(str(a).startswith("--kubeconfig=") for a in container.get("args") or []):
        return command[1]
    return None


# The scheduler reads its kubeconfig for delegated authentication and authorization too.
KUBECONFIG_FLAGS = ("--kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig")


def _options(args: list[str]) -> dict[str, str]:
    """`--name X`, `-name X`, `--name=X`, `-q`: Go-style flags as crictl takes them."""
    opts: dict[str, str] = {}
    i = 0
    flags_without_value = {"q", "quiet", "a", "all", "v", "verbose"}
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            key, sep, value = arg.lstrip("-").partition("=")
            if not sep and key not in flags_without_value and i + 1 < len(args):
                value = args[i + 1]
                i += 1
            opts[key] = value
        i += 1
    return opts


def _positional(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            key = arg.lstrip("-")
            skip = "=" not in key and key in ("timeout", "t", "name", "state", "pod")
            continue
        out.append(arg)
    return out


# The shims stand in for systemctl and crictl, which take milliseconds on a real master, so
# they import only built-in modules (_socket, os, sys: 10 ms less than socket and json). The
# words are NUL-separated both ways: no argv word, and no line the agent writes, holds a NUL.
SHIM = """#!{python} -IS
# {tool} for sandbox master {node}: forwards to its node agent.
import _socket, os, sys
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
s.settimeout(600)
try:
    s.connect({sock!r})
except OSError as exc:
    sys.stderr.write("{tool}: the node agent of {node} is not running (" + str(exc) + ")\\n")
    sys.exit(1)
s.sendall(b"\\0".join([b"{tool}", *map(os.fsencode, sys.argv[1:])]))
s.shutdown(_socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
rc, out, err = data.split(b"\\0", 2)
sys.stdout.buffer.write(out)
sys.stderr.buffer.write(err)
sys.exit(int(rc))
"""


def write_shims(master_dir: Path, node_name: str) -> Path:
    bindir = master_dir / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in ("systemctl", "crictl"):
        path = bindir / tool
        path.write_text(SHIM.format(python=sys.executable, tool=tool, node=node_name,
                                    sock=socket_name(master_dir)))
        path.chmod(0o755)
    return bindir


def main() -> None:
    agent = Agent(Path(sys.argv[1]))
    signal.signal(signal.SIGTERM, agent.shutdown)
    agent.serve()


if __name__ == "__main__":
    main()
