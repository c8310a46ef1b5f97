"""Guide 3.4 whole, as an operator rehearses it: `ocp-recovery drill expired-certs`. The
drill fails (exit 20) when any outcome is missing: certificates valid and chaining in the API
and on disk, manifests annotated, the kubelet kubeconfig's token accepted, the recovery API
server gone."""

from __future__ import annotations

import re

import pytest

from tests.conftest import require_etcd, require_kube_apiserver

pytestmark = pytest.mark.timeout(900)


def test_expired_certs_drill(run_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    require_kube_apiserver()
    require_etcd("3.5")
    out = run_cli(["-v", "drill", "expired-certs", "--dir", str(tmp_path)])
    report = out.stdout
    logs = out.stdout + out.stderr
    assert "step.done" in logs
    assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", logs)
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.", logs), \
        "a service-account token was logged"
    assert "before: the installer's admin kubeconfig is refused" in report
    assert "expired" in report.split("before:", 1)[1].splitlines()[0]
    assert "signers and" in report and "valid and signed by their signers" in report
    assert "equal the API's" in report
    assert "requested by system:serviceaccount:openshift-machine-config-operator:" \
        "node-bootstrapper and approved" in report
    assert "recovery API server gone" in report
    assert not (tmp_path / "sandbox").exists()  # torn down after success
