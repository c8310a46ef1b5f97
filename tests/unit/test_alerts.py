"""The backup-freshness alerts (manifests/backup/base/prometheusrule.yaml) run by Prometheus's
own rule engine: `promtool test rules` on kube-state-metrics series written here, as OpenShift
4.3 scrapes them, each alert shown firing and not firing."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import missing
from tests.image.conftest import REPO

RULE = REPO / "manifests/backup/base/prometheusrule.yaml"
NAMESPACE, CRONJOB = "ocp-recovery", "ocp-recovery-backup"
SCRAPE_MINUTES = 2  # kube-state-metrics' scrape interval on OpenShift 4.3
END_HOURS = 30  # the series run until then
# The scrape's own labels; `namespace` is the object's (the ServiceMonitor honours labels).
KSM = {"job": "kube-state-metrics", "endpoint": "https-main", "service": "kube-state-metrics",
       "namespace": NAMESPACE}
KSM_POD_A = {**KSM, "instance": "10.128.2.7:8443", "pod": "kube-state-metrics-5d6c7-abcde"}
KSM_POD_B = {**KSM, "instance": "10.129.0.4:8443", "pod": "kube-state-metrics-5d6c7-fghij"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing("promtool (Debian's prometheus package; scripts/install.sh --test installs it)")
    return found


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's spec as a plain Prometheus rule file."""
    rule = yaml.safe_load(RULE.read_text())
    assert rule["kind"] == "PrometheusRule"
    return {"groups": rule["spec"]["groups"]}


def alert_rule(name: str) -> dict[str, Any]:
    [rule] = [r for g in rule_groups()["groups"] for r in g["rules"] if r.get("alert") == name]
    return rule


def samples(*segments: tuple[float | None, float]) -> str:
    """promtool's notation: each (value, hours) is that many hours of scrapes of the value,
    of none for None."""
    shown = []
    for value, hours in segments:
        count = round(hours * 60 / SCRAPE_MINUTES)
        shown.append(f"_x{count}" if value is None else f"{value:g}x{count - 1}")
    return " ".join(shown)


def present(value: float, since_hours: float = 0) -> str:
    before = [(None, since_hours)] if since_hours else []
    return samples(*before, (value, END_HOURS - since_hours))


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    shown = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{shown}}}", "values": values}


def job(name: str, start_hours: float, *, succeeded: bool, owner: str = CRONJOB,
        minutes: int = 5) -> list[dict[str, str]]:
    """A finished Job's series, from its start on; only a successful one has a completion
    time (Kubernetes sets it on success only)."""
    labels = {**KSM_POD_A, "job_name": name}
    start = start_hours * 3600

    def gauge(metric: str, value: float) -> dict[str, str]:
        return series(metric, labels, present(value, start_hours))

    found = [series("kube_job_owner", {**labels, "owner_kind": "CronJob", "owner_name": owner,
                                       "owner_is_controller": "true"},
                    present(1, start_hours)),
             gauge("kube_job_status_start_time", start),
             gauge("kube_job_status_succeeded", int(succeeded)),
             gauge("kube_job_status_failed", int(not succeeded))]
    if succeeded:
        found.append(gauge("kube_job_status_completion_time", start + minutes * 60))
    return found


def cronjob(suspend: str = present(0), labels: dict[str, str] = KSM_POD_A) -> list[dict[str, str]]:
    """The CronJob, created at time 0."""
    cronjob_labels = {**labels, "cronjob": CRONJOB}
    return [series("kube_cronjob_created", cronjob_labels, present(0)),
            series("kube_cronjob_spec_suspend", cronjob_labels, suspend)]


@dataclass(frozen=True)
class Fires:
    labels: dict[str, str]
    duration: str = ""  # {{ $value | humanizeDuration }}, when the annotations show it


@dataclass(frozen=True)
class Scenario:
    alert: str
    input_series: list[dict[str, str]]
    # At each time (minutes since 0): the alerts firing, none for "does not fire".
    expected: dict[int, list[Fires]]


def expected_alert(rule: dict[str, Any], fires: Fires) -> dict[str, Any]:
    """The alert as Prometheus sends it: the rule's labels and its annotations expanded."""
    def expand(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: fires.labels[m[1]], text)
        text = text.replace("{{ $value | humanizeDuration }}", fires.duration)
        assert "{{" not in text, text
        return text

    return {"exp_labels": {**fires.labels, **rule["labels"]},
            "exp_annotations": {k: expand(v) for k, v in rule["annotations"].items()}}


H = 60  # minutes
FAILURES_FROM_6_H = [s for hours in (6, 12, 18, 24)
                     for s in job(f"backup-{hours}", hours, succeeded=False)]
SCENARIOS = {
    "missing: a success 2 h ago": Scenario("OcpRecoveryBackupMissing", [
        *cronjob(), *job("backup-0", 0, succeeded=True), *job("backup-6", 6, succeeded=False),
        *job("backup-26", 26, succeeded=True)], {28 * H + 5: []}),
    # Fires 26 h after the last success however many Jobs failed since; another CronJob's
    # Job succeeding does not count.
    "missing: the last success 27 h ago": Scenario("OcpRecoveryBackupMissing", [
        *cronjob(), *job("backup-0", 0, succeeded=True), *FAILURES_FROM_6_H,
        *job("other-26", 26, succeeded=True, owner="other")],
        {25 * H: [], 27 * H + 5: [Fires({"namespace": NAMESPACE}, "1d 3h 0m 0s")]}),
    # No success ever: fires once the CronJob is 26 h old.
    "missing: never a success": Scenario("OcpRecoveryBackupMissing", [
        *cronjob(), *FAILURES_FROM_6_H],
        {25 * H: [], 27 * H: [Fires({"namespace": NAMESPACE}, "1d 3h 0m 0s")]}),
    "failed: the newest Job failed after an older one succeeded": Scenario(
        "OcpRecoveryBackupFailed", [*cronjob(), *job("backup-0", 0, succeeded=True),
                                    *job("backup-6", 6, succeeded=False)],
        {3 * H: [], 6 * H + 10: [Fires({"namespace": NAMESPACE, "job_name": "backup-6"})]}),
    # Resolved by the next success; another CronJob's failed Job does not count.
    "failed: the newest Job succeeded after a failure": Scenario(
        "OcpRecoveryBackupFailed", [*cronjob(), *job("backup-0", 0, succeeded=False),
                                    *job("backup-6", 6, succeeded=True),
                                    *job("other-7", 7, succeeded=False, owner="other")],
        {3 * H: [Fires({"namespace": NAMESPACE, "job_name": "backup-0"})], 8 * H: []}),
    "suspended for 2 h": Scenario("OcpRecoveryBackupSuspended", cronjob(present(1)), {
        30: [], 2 * H: [Fires({"namespace": NAMESPACE, "cronjob": CRONJOB})]}),
    "suspended, kube-state-metrics restarted on another node": Scenario(
        "OcpRecoveryBackupSuspended",
        [*cronjob(samples((1, 0.7))), *cronjob(present(1, 0.7), KSM_POD_B)],
        {90: [Fires({"namespace": NAMESPACE, "cronjob": CRONJOB})]}),
    "not suspended": Scenario("OcpRecoveryBackupSuspended", cronjob(), {2 * H: []}),
    "suspended for a 50 min maintenance": Scenario(
        "OcpRecoveryBackupSuspended", cronjob(samples((1, 50 / 60), (0, END_HOURS - 50 / 60))),
        {45: [], 2 * H: []}),
}


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "ocp-recovery-backup.rules.yaml"
    path.write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid_for_prometheus(rule_file: Path) -> None:
    done = run_promtool("check", "rules", str(rule_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_each_alert_fires_exactly_when_it_should(scenario: Scenario, rule_file: Path,
                                                 tmp_path: Path) -> None:
    rule = alert_rule(scenario.alert)
    tests = {"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": [{
        "interval": f"{SCRAPE_MINUTES}m", "input_series": scenario.input_series,
        "alert_rule_test": [
            {"eval_time": f"{minutes}m", "alertname": scenario.alert,
             "exp_alerts": [expected_alert(rule, fires) for fires in alerts]}
            for minutes, alerts in scenario.expected.items()]}]}
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = run_promtool("test", "rules", str(test_file))
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_says_how_bad_and_what_to_run_next() -> None:
    logs = "`oc -n ocp-recovery logs job/"
    status = "`ocp-recovery backup status /var/lib/ocp-recovery/backups`"
    jobs = "`oc -n ocp-recovery get jobs`"
    told = {"OcpRecoveryBackupMissing": [jobs, logs + "<name>`", status],
            "OcpRecoveryBackupFailed": [logs + "{{ $labels.job_name }}`", jobs, status],
            "OcpRecoveryBackupSuspended": ["`oc -n ocp-recovery patch cronjob/", status]}
    for alert, commands in told.items():
        rule = alert_rule(alert)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        description = " ".join(rule["annotations"]["description"].split())
        for command in commands:
            assert command in description, (alert, command)
