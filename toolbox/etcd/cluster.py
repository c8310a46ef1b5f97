"""Text formats of etcd membership: `/run/etcd/environment` and INITIAL_CLUSTER."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

# What the 4.3 setup-etcd-environment carries over when it rewrites the file.
CARRIED_OVER = ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE")


@dataclass
class EnvFile:
    """`/run/etcd/environment`: `export K=V` lines reach etcd, plain `K=V` lines are only
    read by the pod's shell (IP, DNS name)."""

    exported: dict[str, str] = field(default_factory=dict)
    plain: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.exported.get(key, self.plain.get(key))

    def merged(self) -> dict[str, str]:
        return {**self.plain, **self.exported}

    def render(self) -> str:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.exported.items()]
        lines += [f"{k}={shlex.quote(v)}" for k, v in self.plain.items()]
        return "\n".join(lines) + "\n"


def parse_env_file(text: str) -> EnvFile:
    """Shell-like `[export ]K=V` lines; comments and blank lines ignored; a later line wins,
    as when the shell sources the file (4.3's member add appended a `#[recover]` block)."""
    env = EnvFile()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exported = line.startswith("export ")
        if exported:
            line = line[len("export "):].strip()
        key, sep, value = line.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            continue
        words = shlex.split(value, comments=False) if value else [""]
        text_value = " ".join(words)
        env.exported.pop(key, None)
        env.plain.pop(key, None)
        (env.exported if exported else env.plain)[key] = text_value
    return env


def render_initial_cluster(members: list[tuple[str, str]]) -> str:
    return ",".join(f"{name}={url}" for name, url in members)
