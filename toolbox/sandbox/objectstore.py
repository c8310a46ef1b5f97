"""A real S3 object store for the sandbox and the tests: Ceph's RADOS Gateway from Debian's
Ceph 16 packages, as one mon, one OSD and one radosgw on one loopback address, auth none,
serving HTTP and HTTPS (a certificate issued by a CA the store makes).

Ceph 16 has no standalone radosgw (no dbstore): S3 needs a mon and an OSD behind it. The
daemons fork as real daemons (pid files in run/, logs in log/). Private network and mount
namespaces are fine; a new PID namespace needs its own /proc (the pid files name its pids),
and radosgw 16 has been seen to abort at start in one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from toolbox import log
from toolbox.errors import (
    CommandFailed,
    InvalidInput,
    PreconditionFailed,
    RecoveryError,
    WaitTimedOut,
)
from toolbox.pki import certs
from toolbox.sandbox.cluster import _alive, _read_pid, _require_free, _wait_gone
from toolbox.waiting import wait_until

_log = log.get(__name__)

Backend = Literal["memstore", "bluestore"]
PACKAGES = "radosgw ceph-mon ceph-osd ceph-common"
BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "radosgw", "ceph", "radosgw-admin")
DEFAULT_IP = "127.0.0.9"
MON_PORT, HTTP_PORT, HTTPS_PORT = 3300, 7480, 8443
GIB = 1 << 30
# memstore keeps every object in the OSD's RAM; bluestore's file is sparse.
DEFAULT_SIZE: dict[str, int] = {"memstore": GIB, "bluestore": 16 * GIB}
START_TIMEOUT = 90.0   # each daemon's start; the 2 shared cores make it slow at times
PID_FILE_TIMEOUT = 20.0  # a daemon's start command returns once it has forked and set up
STOP_TIMEOUT = 20.0    # each daemon's exit after SIGTERM, before SIGKILL
COMMAND_TIMEOUT = 60.0
MON, RGW = "mon.a", "client.rgw.a"
USER = "sandbox"
ACCESS_KEY = "OCPRECOVERYSANDBOX00"
# Fixed and printed by `sandbox object-store-env`: a sandbox's, not a secret.
SECRET_KEY = "ocp-recovery-sandbox-object-store-secret"
REGION = "default"  # Ceph's default zonegroup; any name signs, this one is what it is called
# Ceph 16 accepts no flexible checksums: boto3 1.36+ must only send them when required.
CHECKSUM_SETTINGS = {"request_checksum_calculation": "when_required",
                     "response_checksum_validation": "when_required"}


@dataclass(frozen=True)
class ObjectStore:
    directory: Path
    ip: str = DEFAULT_IP
    backend: Backend = "memstore"
    size_bytes: int = GIB
    osd_id: int = 0
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    # ---- where things are --------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.directory / "ceph.conf"

    @property
    def run_dir(self) -> Path:
        return self.directory / "run"

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"

    @property
    def ca_bundle(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def tls_pem(self) -> Path:
        """radosgw's certificate and key in one PEM file (0600)."""
        return self.directory / "rgw.pem"

    @property
    def endpoint_http(self) -> str:
        return f"http://{self.ip}:{HTTP_PORT}"

    @property
    def endpoint_https(self) -> str:
        return f"https://{self.ip}:{HTTPS_PORT}"

    @property
    def daemons(self) -> tuple[str, str, str]:
        """The daemons' names in the order they stop: radosgw, the OSD, the mon."""
        return RGW, f"osd.{self.osd_id}", MON

    def log_file(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    # ---- lifecycle ---------------------------------------------------------------------
    @staticmethod
    def require_available(ip: str = DEFAULT_IP) -> None:
        """Refuse, before anything is made, when Ceph is not installed or the ports are taken."""
        absent = missing_binaries()
        if absent:
            raise PreconditionFailed(
                f"the sandbox object store needs Ceph's {', '.join(absent)}, not found on PATH",
                next_step=f"apt-get install --no-install-recommends {PACKAGES}")
        _require_free(ip, (MON_PORT, HTTP_PORT, HTTPS_PORT))

    @classmethod
    def up(cls, directory: Path, ip: str = DEFAULT_IP, *, backend: Backend = "memstore",
           size_bytes: int | None = None) -> ObjectStore:
        """Make and start a one-node Ceph with radosgw in `directory`, and its S3 user.
        On a failure the daemons it started are stopped; the directory stays, for its logs."""
        if backend not in DEFAULT_SIZE:
            raise InvalidInput(f"object store backend {backend!r} is not memstore or bluestore")
        cls.require_available(ip)
        directory = directory.resolve()
        if any(c.isspace() for c in str(directory)):
            raise InvalidInput(f"the object store's directory {str(directory)!r} holds a "
                               "space: radosgw's frontend setting cannot name such a path",
                               next_step="use a directory whose path has no spaces")
        if (directory / "ceph.conf").exists():
            raise PreconditionFailed(f"an object store already exists in {directory}",
                                     next_step=f"stop it and remove {directory}, or use "
                                     "another directory")
        store = cls(directory, ip, backend, size_bytes or DEFAULT_SIZE[backend])
        try:
            store._create()
        except BaseException as failure:
            try:
                store.stop()
                left = f"the daemons it started are stopped; {directory} keeps their logs"
            except RecoveryError as exc:  # the first failure is the one to report
                left = f"stopping its daemons failed too: {exc.what}"
            if isinstance(failure, RecoveryError):
                failure.state = f"the object store did not start: {left}"
            raise
        return store

    def _create(self) -> None:
        for sub in ("run", "log", "mon", "osd", "rgw"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self._write_tls()
        fsid = str(uuid.uuid4())
        self.conf.write_text(self._ceph_conf(fsid))
        monmap = self.directory / "monmap"
        self._run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                   f"[v2:{self.ip}:{MON_PORT}]", str(monmap)], MON)
        self._run(["ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a",
                   "--monmap", str(monmap)], MON)
        self._start(MON)
        wait_until(lambda: self._accepts(MON_PORT), timeout=START_TIMEOUT,
                   what=f"ceph-mon to listen on {self.ip}:{MON_PORT}",
                   next_step=f"read {self.log_file(MON)}")
        osd_uuid = str(uuid.uuid4())
        osd_id = int(self._ceph("osd", "new", osd_uuid).strip())
        if osd_id != self.osd_id:  # a new cluster's first OSD is osd.0
            raise PreconditionFailed(f"the new Ceph cluster in {self.directory} numbered its "
                                     f"OSD {osd_id}, not {self.osd_id}",
                                     next_step=f"read {self.log_file(MON)}")
        osd = f"osd.{osd_id}"
        (self.directory / "osd" / f"ceph-{osd_id}").mkdir(exist_ok=True)
        self._run(["ceph-osd", "-c", str(self.conf), "-i", str(osd_id), "--mkfs",
                   "--osd-uuid", osd_uuid], osd)
        self._start(osd)
        wait_until(self._osd_up, timeout=START_TIMEOUT, what=f"{osd} to be up in the mon's map",
                   next_step=f"read {self.log_file(osd)}")
        self.start_radosgw()
        self._run(["radosgw-admin", "-c", str(self.conf), "user", "create", f"--uid={USER}",
                   "--display-name=ocp-recovery sandbox", f"--access-key={self.access_key}",
                   f"--secret={self.secret_key}"], RGW)
        _log.info("objectstore.up", endpoint=self.endpoint_https, backend=self.backend,
                  directory=str(self.directory))

    def start_radosgw(self) -> None:
        """Start radosgw (again, after kill_radosgw) and wait until it answers HTTP."""
        if self.pid(RGW):
            return
        self._start(RGW)
        wait_until(self._serving, timeout=START_TIMEOUT,
                   what=f"radosgw to answer on {self.endpoint_http}",
                   next_step=f"read {self.log_file(RGW)}")

    def kill_radosgw(self) -> None:
        """SIGKILL radosgw (the store gone mid-request); the mon and OSD keep the data."""
        self._signal(RGW, signal.SIGKILL)

    def stop(self) -> None:
        """Stop radosgw, the OSD, then the mon (the OSD exits slowly without a mon): SIGTERM,
        then SIGKILL after STOP_TIMEOUT."""
        for daemon in self.daemons:
            self._signal(daemon, signal.SIGTERM)

    def _signal(self, daemon: str, signum: signal.Signals) -> None:
        pid = self.pid(daemon)
        if pid is None:
            return
        for sig in (signum, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            _wait_gone(pid, STOP_TIMEOUT)
            if not _alive(pid):
                return
        raise WaitTimedOut(f"{daemon} (pid {pid}) did not exit within {STOP_TIMEOUT:.0f}s of "
                           "SIGKILL", state="it is still running (stuck in the kernel?)",
                           next_step=f"look at /proc/{pid}/stack; read {self.log_file(daemon)}")

    # ---- observing ---------------------------------------------------------------------
    def pid(self, daemon: str) -> int | None:
        """The daemon's pid while it runs; None when it does not (a stale pid file, or a pid
        now used by another process, does not count)."""
        pid = _read_pid(self.run_dir / f"{daemon}.pid")
        if pid is None or not _alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return pid if str(self.conf).encode() in cmdline else None

    def running(self) -> dict[str, bool]:
        return {daemon: self.pid(daemon) is not None for daemon in self.daemons}

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each running daemon."""
        sizes = {}
        for daemon in self.daemons:
            pid = self.pid(daemon)
            if pid is None:
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes[daemon] = int(line.split()[1]) * 1024
        return sizes

    def _accepts(self, port: int) -> bool:
        self._require_running(MON)
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex((self.ip, port)) == 0

    def _osd_up(self) -> bool:
        osd = f"osd.{self.osd_id}"
        self._require_running(osd)
        return json.loads(self._ceph("osd", "stat", "-f", "json")).get("num_up_osds") == 1

    def _serving(self) -> bool:
        self._require_running(RGW)
        try:
            with urllib.request.urlopen(self.endpoint_http, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # an S3 error is an answer
        except OSError:
            return False

    def _require_running(self, daemon: str) -> None:
        """Inside a wait: a daemon that died is a failure now, not after the timeout."""
        if self.pid(daemon) is None:
            raise CommandFailed(
                self._daemon_argv(daemon), 0, _tail(self.log_file(daemon)),
                state=f"{daemon} started, then exited; the object store is not serving",
                next_step=f"read {self.log_file(daemon)} (radosgw 16 has been seen to abort "
                "in a new PID namespace: run outside `unshare --pid`)")

    # ---- S3 ----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The AWS SDK variables for the HTTPS endpoint (boto3 reads AWS_DEFAULT_REGION,
        other SDKs AWS_REGION; the checksum settings are what Ceph 16 needs)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_https,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            **{f"AWS_{name.upper()}": value for name, value in CHECKSUM_SETTINGS.items()},
        }

    def client(self, https: bool = True) -> Any:
        """A boto3 S3 client of this store (boto3 is imported here: it is slow to load)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_https if https else self.endpoint_http,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            region_name=self.region, verify=str(self.ca_bundle) if https else None,
            config=Config(s3={"addressing_style": "path"}, **CHECKSUM_SETTINGS))

    def create_bucket(self, name: str, object_lock: bool = False) -> None:
        if len(name) < 3:
            raise InvalidInput(f"bucket name {name!r} is shorter than 3 characters (S3 and "
                               "Ceph refuse it)")
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)

    # ---- saved in the sandbox state ----------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {**asdict(self), "directory": str(self.directory)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ObjectStore:
        return cls(**{**state, "directory": Path(state["directory"])})

    # ---- helpers -----------------------------------------------------------------------
    def _write_tls(self) -> None:
        ca = certs.self_signed_ca("ocp-recovery sandbox object store CA")
        server = certs.issue(ca, common_name=self.ip, ip_addresses=[self.ip],
                             dns_names=["localhost"], client=False)
        self.ca_bundle.write_bytes(ca.cert_pem())
        fd = os.open(self.tls_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as pem:
            pem.write(server.cert_pem() + server.key_pem())

    def _ceph_conf(self, fsid: str) -> str:
        d = self.directory
        if self.backend == "memstore":
            store = f"memstore_device_bytes = {self.size_bytes}\n"
        else:
            # A sparse file; without a cap the OSD's caches grow toward 4 GiB; a new empty
            # store needs no fsck (a second at mkfs).
            store = (f"bluestore_block_path = {d}/osd/block\n"
                     "bluestore_block_create = true\n"
                     f"bluestore_block_size = {self.size_bytes}\n"
                     "bluestore_fsck_on_mkfs = false\n"
                     "osd_memory_target = 1073741824\n")
        return f"""[global]
fsid = {fsid}
mon_host = v2:{self.ip}:{MON_PORT}
public_addr = {self.ip}
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
keyring = /dev/null
run_dir = {d}/run
admin_socket = {d}/run/$name.asok
pid_file = {d}/run/$name.pid
log_file = {d}/log/$name.log
mon_data = {d}/mon/$cluster-$id
osd_data = {d}/osd/$cluster-$id
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 1
mon_data_avail_crit = 0
osd_crush_chooseleaf_type = 0

[mon]
# Each map change (radosgw makes ten pools and settings at its first start and first bucket)
# waits for the next proposal: 1 s by default, which is most of the start-up time here.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[osd]
osd_objectstore = {self.backend}
osd_max_object_size = 134217728
{store}
[{RGW}]
rgw_frontends = beast endpoint={self.ip}:{HTTP_PORT} ssl_endpoint={self.ip}:{HTTPS_PORT} \
ssl_certificate={self.tls_pem}
rgw_data = {d}/rgw
rgw_dns_name = {self.ip}
# Without these two radosgw loops on "get_initial_auth_request returned -13".
auth_client_required = none
ms_mon_client_mode = crc
"""

    def _daemon_argv(self, daemon: str) -> list[str]:
        kind, _, ident = daemon.partition(".")
        conf = ["-c", str(self.conf)]
        if kind == "client":
            return ["radosgw", *conf, "-n", daemon]
        return [f"ceph-{kind}", *conf, "-i", ident]

    def _start(self, daemon: str) -> None:
        """Run the daemon, which forks and leaves; its pid file says it runs. Its first
        words go to log/<daemon>.out: a pipe would stay open in the forked daemon."""
        argv = self._daemon_argv(daemon)
        out = self.log_dir / f"{daemon}.out"
        with out.open("ab") as sink:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink,
                                  stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT)
        if done.returncode != 0:
            raise CommandFailed(argv, done.returncode, _tail(out),
                                state=f"{daemon} is not running",
                                next_step=f"read {self.log_file(daemon)} and {out}")
        wait_until(lambda: self.pid(daemon) is not None, timeout=PID_FILE_TIMEOUT,
                   what=f"{daemon} to write its pid file in {self.run_dir}",
                   next_step=f"read {self.log_file(daemon)}",
                   progress=lambda: self._pid_file_state(daemon))

    def _pid_file_state(self, daemon: str) -> str:
        pid = _read_pid(self.run_dir / f"{daemon}.pid")
        if pid is None:
            return "no pid file yet"
        return (f"its pid file names {pid}, which is no {daemon} of {self.conf} in this /proc "
                "(a PID namespace without its own /proc?)")

    def _ceph(self, *args: str) -> str:
        return self._run(["ceph", "-c", str(self.conf), "--connect-timeout",
                          str(int(COMMAND_TIMEOUT)), *args], MON)

    def _run(self, argv: list[str], daemon: str) -> str:
        """A Ceph tool's stdout; a failure names the daemon's log to read."""
        try:
            done = subprocess.run(argv, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT + 10, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise WaitTimedOut(f"`{' '.join(argv)}` did not finish within "
                               f"{COMMAND_TIMEOUT + 10:.0f}s",
                               next_step=f"read {self.log_file(daemon)}") from exc
        if done.returncode != 0:
            raise CommandFailed(argv, done.returncode, done.stderr or done.stdout,
                                next_step=f"read {self.log_file(daemon)}")
        return done.stdout


def missing_binaries() -> list[str]:
    """The Ceph commands the store needs that are not on PATH."""
    return [name for name in BINARIES if shutil.which(name) is None]


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
