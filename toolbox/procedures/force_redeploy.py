"""Guide 3.4 step 5: make the operators roll out the control plane with the new certificates.

The three `oc patch kubeapiserver|kubecontrollermanager|kubescheduler cluster -p
'{"spec":{"forceRedeploymentReason":"recovery-<date>"}}' --type=merge` of the guide, each
read back to confirm it took.
"""

from __future__ import annotations

import datetime as dt

from toolbox import log
from toolbox.errors import ApiUnavailable
from toolbox.kube.client import KubeClient

_log = log.get(__name__)

OPERATORS = ("KubeAPIServer", "KubeControllerManager", "KubeScheduler")


def run(client: KubeClient, reason: str | None = None) -> str:
    reason = reason or "recovery-" + dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H%M%S")
    for kind in OPERATORS:
        client.merge_patch(kind, "cluster", {"spec": {"forceRedeploymentReason": reason}})
        current = client.get(kind, "cluster") or {}
        if (current.get("spec") or {}).get("forceRedeploymentReason") != reason:
            raise ApiUnavailable(f"{kind.lower()}/cluster did not keep "
                                 f"forceRedeploymentReason={reason}",
                                 next_step="run `ocp-recovery control-plane force-redeploy` "
                                 "again")
        _log.info("force_redeploy.patched", kind=kind, reason=reason)
    return reason
