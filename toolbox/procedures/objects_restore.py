"""`objects restore BACKUP --namespace NS | --object KEY…`: put objects back into the live cluster
from a backup, exactly as they were stored, without rewinding anything else.

What the blog posts do by hand (a scratch etcd from the snapshot, keys copied over with
etcdctl put), made safe: the backup's value bytes go back under the same keys with
create-only etcd transactions, so nothing that exists now is overwritten; an object that
changed since the backup is reported, and replaced only with --replace, and then only if it
is still at the mod revision the plan showed. The namespace's own object is written first,
so the API server never serves objects of a namespace it does not have. Journaled: a killed
run is resumed (a key already holding the backup's bytes counts as done) or rolled back
(a key is deleted only if it still holds exactly what was written and was created after the
plan). Refused before any write: a namespace that is Terminating live (the namespace
controller would delete the objects again), a value encrypted with a key the live encryption
config no longer has (the API server could not read it), and a backup of another cluster.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field

from toolbox import log
from toolbox.context import Context
from toolbox.errors import IntegrityError, InvalidInput, PreconditionFailed
from toolbox.etcd.client import EtcdClient, StoredKey, resolve_tls
from toolbox.journal import Confirmation, Journal, Plan, Procedure, Step, StepRun, new_operation_id
from toolbox.kube.manifests import host_path_of, load_pod
from toolbox.objects.backup import BackupObjects, Entry, Selection, why_nothing
from toolbox.objects.encoding import ObjectDecodeError, decode, encoding_of, encryption_key_of
from toolbox.objects.encryption import EncryptionConfig, EncryptionConfigError
from toolbox.objects.identity import IDENTITY_KEYS, cluster_identity
from toolbox.objects.keys import namespace_key
from toolbox.report import Report

_log = log.get(__name__)

OPERATION = "objects-restore"
LIVE_ENCRYPTION = "secrets/encryption-config/encryption-config"
# Objects a controller keeps rewriting: restoring them is harmless but not lasting.
REWRITTEN_BY_CONTROLLERS = {"endpoints": "the endpoints controller",
                            "endpointslices.discovery.k8s.io": "the endpoint-slice controller"}
WARNED_OBJECTS = 20  # owner-reference and controller warnings listed one by one


@dataclass(frozen=True)
class RestoreRequest:
    backup: str                    # host path as given
    selection: Selection
    replace: bool = False


@dataclass(frozen=True)
class Replacement:
    key: str
    mod_revision: int              # the live mod revision the plan showed


@dataclass(frozen=True)
class RestorePlan(Plan):
    backup: str
    db_sha256: str
    selection: Selection
    plan_revision: int             # live etcd revision when planned: rollback's floor
    create: tuple[str, ...]        # absent live: written create-only, namespace first
    replace: tuple[Replacement, ...]
    changed: tuple[str, ...]       # present live with other bytes, left alone (no --replace)
    unchanged: int                 # present live with the backup's bytes already
    leased: tuple[str, ...]        # keys bound to a lease in the backup (events): skipped
    storage_prefix: str            # the API server's etcd prefix, e.g. /kubernetes.io/
    namespaces: tuple[str, ...]    # written into: checked again just before writing
    restoring: tuple[str, ...]     # of those, the ones this restore brings back


@dataclass
class Restored:
    plan: RestorePlan
    created: int
    already: int                   # held the backup's bytes already (a resumed run)
    replaced: int
    conflicts: list[str] = field(default_factory=list)

    def report(self) -> Report:
        plan = self.plan
        details = [f"left alone, changed since the backup (restore them with --replace): "
                   f"{', '.join(plan.changed[:WARNED_OBJECTS])}"] if plan.changed else []
        details += [f"changed while this ran, not written: {', '.join(self.conflicts)}"] \
            if self.conflicts else []
        # What the run a resume finishes wrote is this operation's too: created.
        created = self.created + self.already
        written = created + self.replaced
        summary = (f"restored {written} object(s) of {plan.selection.describe()} from "
                   f"{plan.backup}: {created} created, {self.replaced} replaced, "
                   if written else
                   f"NOTHING WRITTEN for {plan.selection.describe()} from {plan.backup}: "
                   if self.conflicts else
                   f"nothing to write for {plan.selection.describe()} from {plan.backup}: ")
        summary += (f"{plan.unchanged} already as in the backup, "
                    f"{len(plan.changed)} changed since the backup and left alone, "
                    f"{len(plan.leased)} leased keys (events) skipped")
        if self.conflicts:
            summary += (f", {len(self.conflicts)} changed while this ran (another restore or "
                        "writer) and left alone")
        return Report(
            "objects.restored", summary,
            {"backup": plan.backup, "created": created, "replaced": self.replaced,
             "unchanged": plan.unchanged, "changed": list(plan.changed),
             "conflicts": self.conflicts, "skipped_leased": len(plan.leased)},
            details=details, warnings=list(plan.warnings),
            next=_next_steps(plan, written))


class ObjectsRestoreProcedure(Procedure[RestoreRequest, RestorePlan, Restored]):
    operation = OPERATION
    plan_type = RestorePlan

    def plan(self, ctx: Context, request: RestoreRequest) -> RestorePlan:
        return plan(ctx, request)

    def steps(self, ctx: Context, plan: RestorePlan) -> list[Step[RestorePlan]]:
        steps = [Step("check-namespaces",
                      "check again, just before writing, that "
                      + (", ".join(plan.namespaces) or "no namespace")
                      + " exist (or come back) and are not Terminating", _recheck_namespaces)]
        if plan.create:
            steps.append(Step("create-objects",
                              f"create {len(plan.create)} key(s) in etcd, create-only (a key "
                              "that exists by then is left alone), the namespace's own object "
                              f"first: {_some(plan.create)}", _create, _uncreate))
        if plan.replace:
            steps.append(Step("replace-objects",
                              f"replace {len(plan.replace)} changed key(s), each only if it "
                              "is still at the mod revision shown: "
                              + _some([f"{r.key}@{r.mod_revision}" for r in plan.replace]),
                              _replace, _unreplace))
        return steps

    def finish(self, ctx: Context, plan: RestorePlan, journal: Journal) -> Restored:
        return Restored(plan, int(journal.fact("created", 0)), int(journal.fact("already", 0)),
                        len(journal.fact("replaced", {})), list(journal.fact("conflicts", [])))

    def nothing_to_do(self, plan: RestorePlan) -> Report | None:
        if plan.create or plan.replace:
            return None
        return Restored(plan, 0, 0, 0).report()

    def confirmation(self, plan: RestorePlan) -> Confirmation:
        parts = [f"create {len(plan.create)}"] if plan.create else []
        parts += [f"replace {len(plan.replace)}"] if plan.replace else []
        left = [f"{plan.unchanged} already as in the backup"] if plan.unchanged else []
        left += [f"{len(plan.changed)} changed since it, left alone"] if plan.changed else []
        return Confirmation(
            f"{' and '.join(parts)} object(s) of {plan.selection.describe()} from "
            f"{plan.backup} (live revision {plan.plan_revision})"
            + (f"; {', '.join(left)}" if left else ""),
            "Write these objects into the live etcd?")


PROCEDURE = ObjectsRestoreProcedure()


def plan(ctx: Context, request: RestoreRequest) -> RestorePlan:
    """Every check, reading only: the backup (exit 6 if damaged), the selection, the cluster
    identity, the live namespace, the encryption keys; then what each key needs."""
    selection = request.selection
    if not (selection.namespace or selection.keys):
        raise InvalidInput("say what to restore: --namespace NS, --object KEY…, or --resource R "
                           "--namespace NS",
                           next_step=f"see what the backup holds: ocp-recovery snapshot ls "
                           f"{request.backup}")
    bad = [k for k in selection.keys if not k.startswith("/")]
    if bad:
        raise InvalidInput(f"{bad[0]!r} is not an etcd key (they start with /, e.g. "
                           "/kubernetes.io/configmaps/NAMESPACE/NAME)",
                           next_step=f"--object /{bad[0]}, or find the key: ocp-recovery "
                           f"snapshot ls {request.backup} --namespace NAMESPACE")
    local = ctx.paths.host(request.backup)
    backup = BackupObjects.open(local, request.backup, selection, also=IDENTITY_KEYS)
    entries = backup.entries()
    missing = [k for k in selection.keys if k.encode() not in backup.keyspace.keys]
    if missing:
        raise InvalidInput(f"{request.backup} holds no key {', '.join(missing)} (at revision "
                           f"{backup.report.revision})",
                           next_step=f"ocp-recovery snapshot ls {request.backup} --prefix "
                           f"{missing[0].rsplit('/', 1)[0]}/")
    if not entries:
        hint = why_nothing(local, request.backup, selection)
        raise InvalidInput(f"{request.backup} holds nothing of {selection.describe()}"
                           + (f": {hint}" if hint else ""),
                           next_step=f"ocp-recovery snapshot ls {request.backup}"
                           + (f" --namespace {selection.namespace}" if selection.namespace
                              else ""))
    with EtcdClient.connect(ctx, resolve_tls(ctx)) as client:
        revision = client.status().revision
        _check_same_cluster(backup, client)
        # Every namespace written into, however the objects were named (--object too).
        namespaces = {e.object.namespace for e in entries if e.object and e.object.namespace}
        restoring = {e.object.name for e in entries
                     if e.object and e.object.resource == "namespaces"}
        written_into = namespaces | ({selection.namespace} if selection.namespace else set())
        for name in sorted(written_into):
            _check_namespace_usable(client, backup.storage_prefix, name, name in restoring)
        live = _live_values(client, entries)
    _check_encryption_keys(ctx, backup, entries)
    own = namespace_key(backup.storage_prefix, selection.namespace or "")
    create, replace, changed, leased, unchanged = [], [], [], [], 0
    restored = []
    for entry in sorted(entries, key=lambda e: e.live.key != own):  # the namespace first
        key = entry.live.key_text
        if entry.live.lease:
            leased.append(key)
            continue
        now = live.get(entry.live.key)
        if now is None:
            create.append(key)
            restored.append(entry)
        elif now.value == backup.keyspace.value(entry.live):
            unchanged += 1
        elif request.replace:
            replace.append(Replacement(key, now.mod_revision))
            restored.append(entry)
        else:
            changed.append(key)
    warnings = _warnings(backup, restored, live, leased)
    return RestorePlan(new_operation_id(OPERATION), tuple(warnings), request.backup,
                       backup.report.db_sha256, selection, revision, tuple(create),
                       tuple(replace), tuple(changed), unchanged, tuple(leased),
                       backup.storage_prefix, tuple(sorted(written_into)),
                       tuple(sorted(restoring & written_into)))


def _check_same_cluster(backup: BackupObjects, client: EtcdClient) -> None:
    """The etcd cluster ID changes with every restore of guide 3.3, so the cluster's own
    identity is asked instead: ClusterVersion's clusterID, else the kube-system
    namespace's uid (set once, at install)."""
    stored = {key: backup.keyspace.value(live) for key in IDENTITY_KEYS
              if (live := backup.keyspace.keys.get(key) or backup.extra.get(key))}
    now = {}
    for key in stored:
        found = client.get(key)
        if found is not None:
            now[key] = found.value
    ours, theirs = cluster_identity(stored), cluster_identity(now)
    if ours is None or theirs is None:
        raise PreconditionFailed(
            f"cannot tell whether {backup.shown} is of this cluster: "
            + ("the backup" if ours is None else "the live etcd")
            + " holds neither ClusterVersion `version` nor the kube-system namespace",
            next_step="check the backup and --endpoints; a backup of an OpenShift or "
            "Kubernetes cluster has both")
    if ours != theirs:
        raise PreconditionFailed(
            f"{backup.shown} is of another cluster: its identity is {ours[0]} {ours[1]}, the "
            f"live cluster's is {theirs[0]} {theirs[1]}",
            next_step="give a backup of this cluster (ocp-recovery backup ls DIR shows each "
            "set's cluster), or check --endpoints")


def _check_namespace_usable(client: EtcdClient, prefix: str, namespace: str,
                            restoring_it: bool) -> None:
    """Objects go into a namespace that exists, or that this restore brings back, and that
    is not being deleted."""
    found = client.get(namespace_key(prefix, namespace))
    if found is None:
        if restoring_it:
            return
        raise PreconditionFailed(
            f"namespace {namespace} does not exist in the live cluster, and this restore does "
            "not bring it back: the API server would not serve objects in it",
            next_step=f"restore the namespace too (--namespace {namespace} without --resource), "
            f"or create it first (oc create namespace {namespace})")
    try:
        meta = decode(found.value).meta
    except ObjectDecodeError:
        return
    if meta.deletion_timestamp:
        raise PreconditionFailed(
            f"namespace {namespace} is Terminating in the live cluster (deletion requested at "
            f"{meta.deletion_timestamp}): the namespace controller would delete what is "
            "restored into it",
            next_step=f"wait until it is gone (`oc get namespace {namespace}` says NotFound), "
            "then run this again")


def _live_values(client: EtcdClient, entries: list[Entry]) -> dict[bytes, StoredKey]:
    """The live value of each selected key that exists: a keys-only range per directory
    first, so only the keys that exist are read whole."""
    wanted = {e.live.key for e in entries}
    directories = {key.rsplit(b"/", 1)[0] + b"/" for key in wanted}
    existing = [key for directory in sorted(directories)
                for key, _ in client.keys(directory) if key in wanted]
    found = {}
    for key in existing:
        value = client.get(key)
        if value is not None:
            found[key] = value
    return found


def _check_encryption_keys(ctx: Context, backup: BackupObjects, entries: list[Entry]) -> None:
    """Each encrypted value's key must still be in the live encryption config, and an
    aescbc value must decrypt with it: a key of that name with another secret is no more
    use to the API server than none."""
    encrypted = [(key, entry) for entry in entries
                 if (key := encryption_key_of(entry.live.head)) is not None]
    if not encrypted:
        return
    paths = ctx.paths
    manifest = paths.manifests / "kube-apiserver-pod.yaml"
    resource_dir = host_path_of(load_pod(manifest, paths.shown(manifest)), "resource-dir",
                                paths.shown(manifest))
    where = f"{resource_dir}/{LIVE_ENCRYPTION}"
    try:
        config = EncryptionConfig.parse(paths.host(where).read_bytes(), where)
    except OSError as exc:
        raise PreconditionFailed(
            f"{len(encrypted)} key(s) of the backup are encrypted at rest, but the live "
            f"encryption config {where} cannot be read ({exc.strerror})",
            next_step="run this on a master whose kube-apiserver serves the cluster") from exc
    except EncryptionConfigError as exc:
        raise PreconditionFailed(f"the live encryption config: {exc}",
                                 next_step="check the kube-apiserver's current revision") from exc
    missing: dict[tuple[str, str], list[str]] = {}
    undecryptable: dict[tuple[str, str], list[str]] = {}
    for (provider, name), entry in encrypted:
        resource = entry.object.resource if entry.object else ""
        if (provider, name) not in config.key_names(resource):
            missing.setdefault((provider, name), []).append(entry.live.key_text)
        elif provider == "aescbc" and not _decrypts(config, backup.keyspace.value(entry.live),
                                                    resource):
            undecryptable.setdefault((provider, name), []).append(entry.live.key_text)
    if missing:
        (provider, name), keys = min(missing.items())
        raise PreconditionFailed(
            f"{len(keys)} value(s) ({keys[0]}…) are encrypted with {provider} key "
            f"{name!r}, which the live encryption config {where} no longer has: the API "
            "server could not read them",
            next_step="restore them with the API after reading them with "
            "`ocp-recovery snapshot get`, or wait until the key is back in the config")
    if undecryptable:
        (provider, name), keys = min(undecryptable.items())
        raise PreconditionFailed(
            f"{len(keys)} value(s) ({keys[0]}…) do not decrypt with {provider} key {name!r} "
            f"of the live encryption config {where}: a key of that name with another secret; "
            "the API server could not read them",
            next_step="restore them with the API after reading them with "
            "`ocp-recovery snapshot get` (it decrypts with the backup's own keys)")


def _decrypts(config: EncryptionConfig, value: bytes, resource: str) -> bool:
    """The value decrypts with `config` into what kube-apiserver stores (protobuf or
    JSON): a wrong secret fails the padding, or, rarely, passes it with noise."""
    try:
        return encoding_of(config.decrypt(value, resource)) in ("protobuf", "json")
    except EncryptionConfigError:
        return False


def _warnings(backup: BackupObjects, restored: list[Entry], live: dict[bytes, StoredKey],
              leased: list[str]) -> list[str]:
    """Owner references the garbage collector would act on, objects controllers rewrite,
    and what is skipped."""
    warnings = []
    decoded = []
    for entry in restored:
        try:
            decoded.append((entry, backup.decoded(entry)))
        except (IntegrityError, InvalidInput) as exc:
            warnings.append(f"{entry.live.key_text}: not decoded ({exc.what}); restored as "
                            "it is, without the owner checks")
    uids = {obj.meta.uid for _, obj in decoded}
    live_uids = {_uid_of(v.value) for v in live.values()}
    orphans, controlled = [], []
    for entry, obj in decoded:
        for owner in obj.meta.owner_references:
            if owner.uid not in uids and owner.uid not in live_uids:
                orphans.append(f"{entry.live.key_text} (owner {owner.kind} {owner.name})")
            elif owner.controller:
                controlled.append(f"{entry.live.key_text} ({owner.kind} {owner.name})")
        rewriter = REWRITTEN_BY_CONTROLLERS.get(entry.object.resource if entry.object else "")
        if rewriter:
            controlled.append(f"{entry.live.key_text} ({rewriter})")
    if orphans:
        warnings.append(f"{len(orphans)} object(s) name an owner that is neither restored nor "
                        "live: the garbage collector will delete them: "
                        + ", ".join(orphans[:WARNED_OBJECTS]))
    if controlled:
        warnings.append(f"{len(controlled)} object(s) are managed by a controller, which will "
                        "rewrite them as it sees fit: " + ", ".join(controlled[:WARNED_OBJECTS]))
    if leased:
        warnings.append(f"{len(leased)} key(s) bound to a lease (events) are not restored: "
                        "their lease is gone, they would never expire")
    return warnings


def _uid_of(value: bytes) -> str:
    try:
        return decode(value).meta.uid
    except ObjectDecodeError:
        return ""


# ---- steps ---------------------------------------------------------------------------------

def _values(run: StepRun[RestorePlan], keys: list[str]) -> Iterator[tuple[bytes, bytes]]:
    """The backup's bytes of `keys`, from the same file the plan checked."""
    if not keys:
        return  # an empty selection would index every key
    plan = run.plan
    backup = BackupObjects.open(run.ctx.paths.host(plan.backup), plan.backup,
                                Selection(keys=tuple(keys)))
    if backup.report.db_sha256 != plan.db_sha256:
        raise IntegrityError(f"{plan.backup} is not the file that was planned from (its "
                             "sha256 changed)",
                             next_step="ocp-recovery rollback, then plan again")
    for key in keys:
        live = backup.keyspace.keys[key.encode()]
        yield key.encode(), backup.keyspace.value(live)


def _recheck_namespaces(run: StepRun[RestorePlan]) -> None:
    """The plan's namespace checks once more: a confirmation may have waited long enough
    for a namespace to be deleted meanwhile."""
    with EtcdClient.connect(run.ctx, resolve_tls(run.ctx)) as client:
        for name in run.plan.namespaces:
            _check_namespace_usable(client, run.plan.storage_prefix, name,
                                    name in run.plan.restoring)


def _create(run: StepRun[RestorePlan]) -> None:
    created = already = 0
    conflicts: list[str] = list(run.journal.fact("conflicts", []))
    with EtcdClient.connect(run.ctx, resolve_tls(run.ctx)) as client:
        for key, value in _values(run, list(run.plan.create)):
            if client.create(key, value) is not None:
                created += 1
                continue
            now = client.get(key)
            if now is not None and now.value == value:
                already += 1   # written by the run this one resumes
            else:
                conflicts.append(key.decode())
    run.journal.record("created", created)
    run.journal.record("already", already)
    run.journal.record("conflicts", conflicts)


def _uncreate(run: StepRun[RestorePlan]) -> None:
    keys = list(reversed(run.plan.create))  # the namespace's own object last
    with EtcdClient.connect(run.ctx, resolve_tls(run.ctx)) as client:
        for key, value in _values(run, keys):
            if not client.delete_if(key, value, run.plan.plan_revision) and \
                    client.get(key) is not None:
                _kept(key)


def _replace(run: StepRun[RestorePlan]) -> None:
    replaced: dict[str, str] = dict(run.journal.fact("replaced", {}))
    conflicts: list[str] = list(run.journal.fact("conflicts", []))
    shown = {r.key: r.mod_revision for r in run.plan.replace}
    with EtcdClient.connect(run.ctx, resolve_tls(run.ctx)) as client:
        for key, value in _values(run, list(shown)):
            text = key.decode()
            now = client.get(key)
            if now is not None and now.value == value:
                continue   # replaced by the run this one resumes
            if now is None or now.mod_revision != shown[text]:
                conflicts.append(text)
                continue
            # What it held goes into the journal first: the rollback puts it back.
            replaced[text] = base64.b64encode(now.value).decode()
            run.journal.record("replaced", replaced)
            if client.replace(key, value, now.mod_revision) is None:
                del replaced[text]
                run.journal.record("replaced", replaced)
                conflicts.append(text)
    run.journal.record("conflicts", conflicts)


def _unreplace(run: StepRun[RestorePlan]) -> None:
    replaced: dict[str, str] = run.journal.fact("replaced", {})
    with EtcdClient.connect(run.ctx, resolve_tls(run.ctx)) as client:
        for key, value in _values(run, list(replaced)):
            old = base64.b64decode(replaced[key.decode()])
            now = client.get(key)
            if now is not None and now.value == value:
                if client.replace(key, old, now.mod_revision) is None:
                    _kept(key)
            elif now is None or now.value != old:  # neither what it held nor the backup's
                _kept(key)


def _kept(key: bytes) -> None:
    """A rollback leaves a key someone wrote after the restore did; it says which."""
    _log.warning("objects.rollback.kept", key=key.decode(errors="replace"),
                 reason="written by someone else since the restore: left as it is")


def _some(keys: tuple[str, ...] | list[str]) -> str:
    """The first keys, for a plan's lines (--json has them all)."""
    shown = ", ".join(keys[:WARNED_OBJECTS])
    return shown + (f" … and {len(keys) - WARNED_OBJECTS} more" if len(keys) > WARNED_OBJECTS
                    else "")


def _next_steps(plan: RestorePlan, written: int) -> list[str]:
    again = f"ocp-recovery objects restore {plan.backup} " + (
        f"--namespace {plan.selection.namespace}" if plan.selection.namespace else
        " ".join(f"--object {k}" for k in plan.selection.keys[:3]))
    steps = [f"{again} --replace (to write the {len(plan.changed)} changed one(s) too)"] \
        if plan.changed else []
    if written and plan.selection.namespace:
        steps.append(f"oc get all,configmaps,secrets -n {plan.selection.namespace}")
    elif written:
        steps.append("oc get the restored objects (their keys are above)")
    return steps
