"""An OpenShift `KubeAPIServerConfig` as upstream kube-apiserver flags, for the sandbox.

The sandbox's node agent plays kubelet, so a kube-apiserver static pod must run as a process.
OpenShift 4.3 runs `hyperkube kube-apiserver --openshift-config=config.yaml`: its fork reads
the whole configuration from that YAML. The sandbox runs an upstream kube-apiserver (v1.20,
built from Debian's source package), which has no `--openshift-config` and takes flags only.
This module turns the YAML into those flags; the agent supplies how a container path maps to
a host path (the pod's hostPath volumes and the container's volumeMounts), and a working
directory of its own (not in the host root) for what the sandbox has to add: a cert dir and,
because 1.20 insists on one, a throwaway service-account signing key.

What the YAML does not say, the sandbox supplies: RBAC authorization, OpenShift's service
network and `/kubernetes.io` etcd prefix (so the normal and the recovery apiserver see the
same data), an issuer, and `--endpoint-reconciler-type=none` (a loopback address may not be
an Endpoints address, so the default reconciler would fail every 10 seconds).
Keys the sandbox does not translate are reported through `say` and ignored.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from toolbox.pki.certs import key_pem

DEFAULT_STORAGE_PREFIX = "kubernetes.io"  # OpenShift's default, not upstream's /registry
SIGNING_KEY = "service-account-signer.key"
# Flags the sandbox adds unless the configuration gives them.
SANDBOX_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("authorization-mode", "RBAC"),
    ("service-cluster-ip-range", "172.30.0.0/16"),
    ("service-account-issuer", "https://kubernetes.default.svc"),
    ("endpoint-reconciler-type", "none"),
)
REQUEST_HEADER_DEFAULTS: tuple[tuple[str, str, str], ...] = (
    # (config key, flag, OpenShift's value when the key is absent)
    ("usernameHeaders", "requestheader-username-headers", "X-Remote-User"),
    ("groupHeaders", "requestheader-group-headers", "X-Remote-Group"),
    ("extraHeaderPrefixes", "requestheader-extra-headers-prefix", "X-Remote-Extra-"),
)
# The keys translated below; anything else is reported and ignored. None: a leaf.
TRANSLATED: dict[str, Any] = {
    "apiVersion": None,
    "kind": None,
    "servingInfo": {"bindAddress": None, "bindNetwork": None, "certFile": None,
                    "keyFile": None, "clientCA": None, "namedCertificates": None,
                    "minTLSVersion": None},
    "storageConfig": {"urls": None, "ca": None, "certFile": None, "keyFile": None,
                      "storagePrefix": None},
    "serviceAccountPublicKeyFiles": None,
    "authConfig": {"requestHeader": {"clientCA": None, "clientCommonNames": None,
                                     "usernameHeaders": None, "groupHeaders": None,
                                     "extraHeaderPrefixes": None}},
    "aggregatorConfig": {"proxyClientInfo": {"certFile": None, "keyFile": None}},
    "kubeletClientInfo": {"ca": None, "certFile": None, "keyFile": None},
    "servicesSubnet": None,
    "servicesNodePortRange": None,
    "apiServerArguments": None,
}

MapPath = Callable[[str], str]
Say = Callable[[str], None]


class ConfigError(ValueError):
    """The configuration cannot be turned into flags (a required key is missing or wrong)."""


def is_kube_apiserver(container: dict[str, Any]) -> bool:
    """`hyperkube kube-apiserver` or `…/kube-apiserver`, given `--openshift-config=`."""
    command = [str(c) for c in container.get("command") or []]
    named = command[:2] == ["hyperkube", "kube-apiserver"] or \
        (bool(command) and command[0].endswith("kube-apiserver"))
    return named and openshift_config_arg(container) is not None


def openshift_config_arg(container: dict[str, Any]) -> str | None:
    for arg in _words(container):
        if arg.startswith("--openshift-config="):
            return arg.partition("=")[2]
    return None


def extra_args(container: dict[str, Any]) -> list[str]:
    """The container's other flags (e.g. `-v=2`), which follow the translated ones."""
    return [a for a in _words(container) if not a.startswith("--openshift-config=")]


def _words(container: dict[str, Any]) -> list[str]:
    command = [str(c) for c in container.get("command") or []]
    skip = 2 if command[:2] == ["hyperkube", "kube-apiserver"] else 1
    return command[skip:] + [str(a) for a in container.get("args") or []]


def kube_apiserver_argv(binary: str | Path, config: dict[str, Any], map_path: MapPath,
                        workdir: Path, *, extra: Sequence[str] = (),
                        known_flags: frozenset[str] | None = None,
                        say: Say = lambda _: None) -> list[str]:
    """The argv that runs `config` (a parsed KubeAPIServerConfig) on the upstream binary.
    `map_path` maps a container path to a host path (other strings come back unchanged);
    `workdir` holds what the sandbox adds (created if needed); `extra`: the container's own
    further flags; `known_flags`: the binary's flags, to drop the OpenShift-only ones."""
    if not isinstance(config, dict):
        raise ConfigError("the configuration is not a YAML mapping")
    for key in ignored_keys(config):
        say(f"kube-apiserver config: ignoring {key} (not translated by the sandbox)")
    flags = _from_config(config, map_path)
    overrides = _api_server_arguments(config.get("apiServerArguments") or {}, map_path)
    overridden = {name for name, _ in overrides}
    flags = [f for f in flags if f[0] not in overridden] + overrides
    given = {name for name, _ in flags}
    flags += [(name, value) for name, value in SANDBOX_DEFAULTS if name not in given]
    flags += _sandbox_files(workdir, given, flags)
    argv = [str(binary)]
    for name, value in flags:
        if known_flags is not None and name not in known_flags:
            say(f"kube-apiserver config: dropping --{name}={value} (not a flag of this "
                "kube-apiserver)")
            continue
        argv.append(f"--{name}={value}")
    dropping = False  # the value word of a dropped `--flag value`
    for arg in extra:
        if not arg.startswith("-"):
            if not dropping:
                argv.append(map_path(arg))
            dropping = False
            continue
        name, sep, _ = arg.lstrip("-").partition("=")
        dropping = known_flags is not None and name not in known_flags
        if dropping:
            say(f"kube-apiserver container: dropping {arg} (not a flag of this kube-apiserver)")
            dropping = not sep
            continue
        argv.append(_map_flag(arg, map_path))
    return argv


def ignored_keys(config: dict[str, Any]) -> list[str]:
    """Dotted names of the keys of `config` that the translation does not read."""
    found: list[str] = []

    def walk(node: Any, schema: dict[str, Any], prefix: str) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key not in schema:
                found.append(prefix + str(key))
            elif schema[key] is not None:
                walk(value, schema[key], f"{prefix}{key}.")

    walk(config, TRANSLATED, "")
    return found


def _from_config(config: dict[str, Any], map_path: MapPath) -> list[tuple[str, str]]:
    flags: list[tuple[str, str]] = []

    def path(name: str, value: Any) -> None:
        if value:
            flags.append((name, map_path(str(value))))

    def plain(name: str, value: Any) -> None:
        if value not in (None, "", []):
            flags.append((name, str(value)))

    serving = _section(config, "servingInfo")
    host, port = _host_port(serving.get("bindAddress"))
    flags.append(("bind-address", host))
    flags.append(("secure-port", port))
    if not ipaddress.ip_address(host).is_unspecified:
        flags.append(("advertise-address", host))
    path("tls-cert-file", serving.get("certFile"))
    path("tls-private-key-file", serving.get("keyFile"))
    path("client-ca-file", serving.get("clientCA"))
    plain("tls-min-version", serving.get("minTLSVersion"))
    for named in serving.get("namedCertificates") or []:
        if not isinstance(named, dict) or not named.get("certFile") or not named.get("keyFile"):
            raise ConfigError("servingInfo.namedCertificates: each needs certFile and keyFile")
        pair = f"{map_path(str(named['certFile']))},{map_path(str(named['keyFile']))}"
        sni = ",".join(str(n) for n in named.get("names") or [])
        flags.append(("tls-sni-cert-key", f"{pair}:{sni}" if sni else pair))

    storage = _section(config, "storageConfig")
    urls = storage.get("urls")
    if not urls or not isinstance(urls, list):
        raise ConfigError("storageConfig.urls is required (a list of etcd URLs)")
    flags.append(("etcd-servers", ",".join(str(u) for u in urls)))
    path("etcd-cafile", storage.get("ca"))
    path("etcd-certfile", storage.get("certFile"))
    path("etcd-keyfile", storage.get("keyFile"))
    prefix = str(storage.get("storagePrefix") or DEFAULT_STORAGE_PREFIX)
    flags.append(("etcd-prefix", "/" + prefix.lstrip("/")))

    for key_file in _strings(config.get("serviceAccountPublicKeyFiles"),
                             "serviceAccountPublicKeyFiles"):
        path("service-account-key-file", key_file)

    request_header = _section(_section(config, "authConfig"), "requestHeader")
    if request_header.get("clientCA"):
        path("requestheader-client-ca-file", request_header["clientCA"])
        names = _strings(request_header.get("clientCommonNames"), "clientCommonNames")
        plain("requestheader-allowed-names", ",".join(names))
        for key, flag, default in REQUEST_HEADER_DEFAULTS:
            values = _strings(request_header.get(key), key) or [default]
            plain(flag, ",".join(values))

    proxy = _section(_section(config, "aggregatorConfig"), "proxyClientInfo")
    path("proxy-client-cert-file", proxy.get("certFile"))
    path("proxy-client-key-file", proxy.get("keyFile"))

    kubelet = _section(config, "kubeletClientInfo")
    path("kubelet-certificate-authority", kubelet.get("ca"))
    path("kubelet-client-certificate", kubelet.get("certFile"))
    path("kubelet-client-key", kubelet.get("keyFile"))

    plain("service-cluster-ip-range", config.get("servicesSubnet"))
    plain("service-node-port-range", config.get("servicesNodePortRange"))
    return flags


def _api_server_arguments(arguments: Any, map_path: MapPath) -> list[tuple[str, str]]:
    if not isinstance(arguments, dict):
        raise ConfigError("apiServerArguments must map a flag name to a list of values")
    flags = []
    for name, values in arguments.items():
        for value in values if isinstance(values, list) else [values]:
            flags.append((str(name).lstrip("-"), map_path(str(value))))
    return flags


def _sandbox_files(workdir: Path, given: set[str],
                   flags: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A cert dir of the sandbox's own (per port: two apiservers of one master must not
    share it), and a signing key when the configuration has none (1.20 requires one);
    its public half then also verifies, or the tokens it signs would be refused."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = dict(flags)["secure-port"]
    added = [("cert-dir", str(workdir / f"certs-{port}"))]
    if "service-account-signing-key-file" not in given:
        key = throwaway_signing_key(workdir)
        added += [("service-account-signing-key-file", str(key)),
                  ("service-account-key-file", str(key))]
    return added


def throwaway_signing_key(workdir: Path) -> Path:
    """An RSA key made once per working directory (so per sandbox master)."""
    path = workdir / SIGNING_KEY
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(key_pem(key))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping")
    return value


def _strings(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list")
    return [str(v) for v in value]


def _host_port(bind_address: Any) -> tuple[str, str]:
    """`127.0.0.11:6443`, `0.0.0.0:6443`, `[::]:6443`, `:6443` -> (host, port)."""
    if not bind_address:
        raise ConfigError("servingInfo.bindAddress is required (host:port)")
    host, sep, port = str(bind_address).rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
        valid = bool(sep) and 0 < int(port) < 65536
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"servingInfo.bindAddress {bind_address!r} is not IP:port")
    return host, port


def _map_flag(arg: str, map_path: MapPath) -> str:
    name, sep, value = arg.partition("=")
    return name + sep + map_path(value) if sep else arg


@functools.cache
def binary_flags(binary: str) -> frozenset[str]:
    """The flag names `binary --help` lists (deprecated ones it hides are not among them)."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    flags = frozenset(re.findall(r"^\s+(?:-\w, )?--([a-z0-9-]+)", out.stdout + out.stderr,
                                 re.MULTILINE))
    if "etcd-servers" not in flags:
        raise ConfigError(f"{binary} --help lists no kube-apiserver flags (exit "
                          f"{out.returncode})")
    return flags

