"""The image, built for real from a locally made base (no registry here), a container
engine API for testcontainers: podman's Docker-compatible service on a private socket, and
the CronJob's manifests rendered as `oc apply -k` renders them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import missing

REPO = Path(__file__).resolve().parents[2]
# The CronJob's variants: `oc apply -k manifests/backup` (off-site, the default) and the PVC one.
OFFSITE_VARIANT = REPO / "manifests/backup"
PVC_VARIANT = REPO / "manifests/backup/pvc"


def render(variant: Path) -> list[dict[str, Any]]:
    """The variant's objects, rendered by `kubectl kustomize` (what `oc apply -k` applies)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing("kubectl (Debian's kubernetes-client; scripts/install.sh --test installs it)")
    done = subprocess.run([kubectl, "kustomize", str(variant)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return list(yaml.safe_load_all(done.stdout))


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def ca_bundle_path_told() -> str:
    """The AWS_CA_BUNDLE that offsite-configmap.yaml tells the operator to uncomment."""
    [path] = re.findall(r"^\s*# AWS_CA_BUNDLE: (\S+)$",
                        (OFFSITE_VARIANT / "offsite-configmap.yaml").read_text(), re.M)
    return path


@pytest.fixture(scope="session")
def engine_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    podman = shutil.which("podman")
    if podman is None:
        missing("podman (scripts/install.sh --test installs it)")
    socket = tmp_path_factory.mktemp("podman") / "api.sock"
    service = subprocess.Popen([str(podman), "system", "service", "--time=0",
                                f"unix://{socket}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not socket.exists():
        if time.monotonic() > deadline or service.poll() is not None:
            service.kill()
            missing("a podman API service (`podman system service` did not start)")
        time.sleep(0.1)
    # testcontainers reads these when it is imported; Ryuk (its reaper container) would
    # need a registry, and every container here is removed by its test.
    os.environ["DOCKER_HOST"] = f"unix://{socket}"
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    yield str(socket)
    service.terminate()
    service.wait(10)


@pytest.fixture(scope="session")
def image() -> str:
    """scripts/build-image.sh --local: the real Containerfile on a debootstrap base."""
    if shutil.which("podman") is None:
        missing("podman (scripts/install.sh --test installs it)")
    started = time.monotonic()
    done = subprocess.run(["bash", "scripts/build-image.sh", "--local",
                           "--tag", "localhost/ocp-recovery:test"], cwd=REPO,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"image built in {time.monotonic() - started:.0f}s")
    return done.stdout.strip().splitlines()[-1]


def run_container(image: str, command: list[str], *, volumes: dict[Path, tuple[str, str]],
                  env: dict[str, str] | None = None, timeout: float = 300,
                  **kwargs: Any) -> tuple[int, str, str]:
    """Run one container to its end with testcontainers; (exit code, stdout, stderr)."""
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image).with_command(command).with_kwargs(
        network_mode="host", **kwargs)
    for host, (inside, mode) in volumes.items():
        container = container.with_volume_mapping(str(host), inside, mode)
    for key, value in (env or {}).items():
        container = container.with_env(key, value)
    container.start()
    try:
        status = container.get_wrapped_container().wait(timeout=timeout)
        out, err = container.get_logs()
        return int(status["StatusCode"]), out.decode(), err.decode()
    finally:
        container.stop()
