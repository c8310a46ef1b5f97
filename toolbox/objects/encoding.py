"""What kube-apiserver stores as an etcd value, decoded offline without the API's types.

A value is protobuf (`k8s\\x00` then a runtime.Unknown envelope whose `raw` is the object's
own message, field 1 its ObjectMeta), JSON (custom resources, some OpenShift types), or
`k8s:enc:<provider>:v1:<key>:` and the ciphertext of one of those (encryption.py decrypts).
The protobuf reader is hand-written from the public field numbers (k8s.io/apimachinery
pkg/apis/meta/v1 and k8s.io/api core/v1 generated.proto): ObjectMeta always, and in full the
few kinds a recovery most often needs (ConfigMap, Secret, Namespace). Unknown fields are
skipped, as protobuf readers do.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

Encoding = Literal["protobuf", "json", "encrypted", "other"]

PROTOBUF_MAGIC = b"k8s\x00"
ENCRYPTED_PREFIX = b"k8s:enc:"
NOT_DECODED_KEY = "ocp-recovery.io/not-decoded"
# A key name longer than this is not a key name: the search for its end stops there.
KEY_PREFIX_LIMIT = 256
MAX_GROUP_DEPTH = 32  # hostile nesting must not exhaust the Python stack

VARINT, FIXED64, LENGTH_DELIMITED, START_GROUP, END_GROUP, FIXED32 = range(6)


class ObjectDecodeError(ValueError):
    """A value that is not what kube-apiserver writes: the message says what and where."""


def encoding_of(value: bytes) -> Encoding:
    """From the first bytes only (called for every key of a snapshot)."""
    if value.startswith(PROTOBUF_MAGIC):
        return "protobuf"
    if value.startswith(ENCRYPTED_PREFIX):
        return "encrypted"
    if value.startswith(b"{"):
        return "json"
    return "other"


def encryption_key_of(value: bytes) -> tuple[str, str] | None:
    """(provider, key name) of a `k8s:enc:<provider>:v1:<key name>:` value, else None."""
    if not value.startswith(ENCRYPTED_PREFIX):
        return None
    parts = value[len(ENCRYPTED_PREFIX):KEY_PREFIX_LIMIT].split(b":", 3)
    if len(parts) < 4 or not parts[0] or not parts[1].startswith(b"v") or not parts[2]:
        return None
    return parts[0].decode("ascii", "replace"), parts[2].decode("utf-8", "replace")


@dataclass(frozen=True)
class OwnerReference:
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    namespace: str
    uid: str
    # kube-apiserver clears it before writing: a stored value has "" (the key's
    # mod_revision is the object's resourceVersion).
    resource_version: str
    creation_timestamp: str | None  # RFC 3339 at second precision, as kubectl shows it
    deletion_timestamp: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    owner_references: tuple[OwnerReference, ...]
    finalizers: tuple[str, ...]


@dataclass(frozen=True)
class DecodedObject:
    api_version: str
    kind: str
    meta: ObjectMeta
    document: dict[str, Any]  # what `snapshot get -o json|yaml` prints
    complete: bool  # False: the document has the metadata only, and says so


def decode(value: bytes) -> DecodedObject:
    """A plaintext value (decrypt an encrypted one first) as an object."""
    encoding = encoding_of(value)
    if encoding == "protobuf":
        return _decode_protobuf(value)
    if encoding == "json":
        return _decode_json(value)
    if encoding == "encrypted":
        provider, key = encryption_key_of(value) or ("?", "?")
        raise ObjectDecodeError(f"the value is encrypted at rest ({provider}, key {key!r}): "
                                "decrypt it with the API server's encryption config first")
    raise ObjectDecodeError(f"the value is neither protobuf (k8s\\x00) nor JSON: it starts "
                            f"with {bytes(value[:8])!r}")


# ---- the protobuf wire format ----------------------------------------------------------
class _Message:
    """A span of the value holding one protobuf message (or a string, or bytes). Offsets are
    the value's own, so an error can say at which byte it is."""

    def __init__(self, data: bytes, start: int, end: int):
        self.data, self.start, self.end = data, start, end

    def raw(self) -> bytes:
        return self.data[self.start:self.end]

    def text(self) -> str:
        # The API server validated these as UTF-8 when they came in as JSON; a stray bad byte
        # is shown, not fatal.
        return self.data[self.start:self.end].decode("utf-8", "replace")

    def fields(self) -> Iterator[_Field]:
        """Each field in order. Groups (deprecated, never written by Kubernetes) are skipped
        like unknown fields."""
        pos = self.start
        while pos < self.end:
            at = pos
            number, wire_type, value, pos = self._field(pos, depth=0)
            if wire_type == END_GROUP:
                raise ObjectDecodeError(f"field {number} at byte {at} ends a group that "
                                        "never started")
            if wire_type != START_GROUP:
                yield _Field(number, at, value)

    def _field(self, pos: int, depth: int) -> tuple[int, int, int | _Message, int]:
        """The field at `pos`: (number, wire type, value, where the next field starts)."""
        at = pos
        tag, pos = self._varint(pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise ObjectDecodeError(f"field number 0 at byte {at}: not a protobuf message")
        if wire_type == VARINT:
            value, pos = self._varint(pos)
            return number, wire_type, value, pos
        if wire_type == LENGTH_DELIMITED:
            length, start = self._varint(pos)
            if start + length > self.end:
                raise ObjectDecodeError(
                    f"truncated: field {number} at byte {at} is {length} bytes long but its "
                    f"message ends at byte {self.end}")
            return number, wire_type, _Message(self.data, start, start + length), start + length
        if wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if pos + size > self.end:
                raise ObjectDecodeError(f"truncated: field {number} at byte {at} needs {size} "
                                        f"bytes, its message ends at byte {self.end}")
            fixed = int.from_bytes(self.data[pos:pos + size], "little")
            return number, wire_type, fixed, pos + size
        if wire_type == END_GROUP:
            return number, wire_type, 0, pos
        if wire_type == START_GROUP:
            if depth >= MAX_GROUP_DEPTH:
                raise ObjectDecodeError(f"groups nested deeper than {MAX_GROUP_DEPTH} at byte "
                                        f"{at}")
            while pos < self.end:
                inner, inner_type, _, pos = self._field(pos, depth + 1)
                if inner_type == END_GROUP:
                    if inner != number:
                        raise ObjectDecodeError(f"the group of field {number} at byte {at} "
                                                f"ends as field {inner}")
                    return number, wire_type, 0, pos
            raise ObjectDecodeError(f"truncated: the group of field {number} at byte {at} "
                                    "has no end")
        raise ObjectDecodeError(f"field {number} at byte {at} has wire type {wire_type}, "
                                "which protobuf does not have")

    def _varint(self, pos: int) -> tuple[int, int]:
        at, value, shift = pos, 0, 0
        while True:
            if pos >= self.end:
                raise ObjectDecodeError(f"truncated: the varint at byte {at} runs past the end "
                                        f"of its message (byte {self.end})")
            byte = self.data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift >= 70:
                raise ObjectDecodeError(f"corrupted varint at byte {at}: longer than 10 bytes")
        if value >= 1 << 64:
            raise ObjectDecodeError(f"corrupted varint at byte {at}: more than 64 bits")
        return value, pos


@dataclass(frozen=True)
class _Field:
    number: int
    at: int  # where its tag is, for messages
    value: int | _Message

    def message(self) -> _Message:
        if isinstance(self.value, _Message):
            return self.value
        raise ObjectDecodeError(f"field {self.number} at byte {self.at} is a number where a "
                                "string or message belongs")

    def text(self) -> str:
        return self.message().text()

    def integer(self) -> int:
        """int64, int32 and bool: negative numbers come as 64-bit two's complement."""
        if isinstance(self.value, _Message):
            raise ObjectDecodeError(f"field {self.number} at byte {self.at} is bytes where a "
                                    "number belongs")
        return self.value - (1 << 64) if self.value >= 1 << 63 else self.value


def _map_entry(entry: _Message, value_of: Callable[[_Message], Any]) -> tuple[str, Any]:
    """A map<string, …> entry: key = 1, value = 2 (either may be absent: empty)."""
    key, value = "", value_of(_Message(entry.data, entry.end, entry.end))
    for field in entry.fields():
        if field.number == 1:
            key = field.text()
        elif field.number == 2:
            value = value_of(field.message())
    return key, value


def _time(message: _Message) -> str | None:
    """A meta/v1 Time (seconds = 1, nanos = 2) as kubectl prints it; None for the zero time."""
    seconds = 0
    for field in message.fields():
        if field.number == 1:
            seconds = field.integer()
    if seconds == 0:
        return None
    try:
        moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise ObjectDecodeError(f"the time at byte {message.start} is out of range "
                                f"({seconds} seconds)") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _base64(message: _Message) -> str:
    return base64.b64encode(message.raw()).decode()


# ---- ObjectMeta --------------------------------------------------------------------------
_OWNER_STRINGS = {5: "apiVersion", 1: "kind", 3: "name", 4: "uid"}
_OWNER_FLAGS = {6: "controller", 7: "blockOwnerDeletion"}
_OWNER_ORDER = ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")


def _owner_reference(message: _Message) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for field in message.fields():
        if field.number in _OWNER_STRINGS:
            found[_OWNER_STRINGS[field.number]] = field.text()
        elif field.number in _OWNER_FLAGS:
            found[_OWNER_FLAGS[field.number]] = bool(field.integer())
    return {key: found[key] for key in _OWNER_ORDER if key in found}


_META_STRINGS = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
# The order of Kubernetes' JSON; selfLink and clusterName are never stored, managedFields
# are not shown.
_META_ORDER = ("name", "generateName", "namespace", "uid", "resourceVersion", "generation",
               "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
               "labels", "annotations", "ownerReferences", "finalizers")


def _object_meta(message: _Message) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for field in message.fields():
        number = field.number
        if number in _META_STRINGS:
            text = field.text()
            if text:
                found[_META_STRINGS[number]] = text
        elif number == 7:
            generation = field.integer()
            if generation:  # always written, omitted from JSON when 0
                found["generation"] = generation
        elif number == 10:
            found["deletionGracePeriodSeconds"] = field.integer()
        elif number in (8, 9):
            moment = _time(field.message())
            if moment:
                found["creationTimestamp" if number == 8 else "deletionTimestamp"] = moment
        elif number in (11, 12):
            key, value = _map_entry(field.message(), _Message.text)
            found.setdefault("labels" if number == 11 else "annotations", {})[key] = value
        elif number == 13:
            found.setdefault("ownerReferences", []).append(_owner_reference(field.message()))
        elif number == 14:
            found.setdefault("finalizers", []).append(field.text())
    return {key: found[key] for key in _META_ORDER if key in found}


def _meta_of(metadata: dict[str, Any]) -> ObjectMeta:
    """The typed view of a metadata document (protobuf-made or JSON as stored)."""
    def text(key: str, where: dict[str, Any] = metadata) -> str:
        value = where.get(key, "")
        if not isinstance(value, str):
            raise ObjectDecodeError(f"metadata {key} is {type(value).__name__}, not a string")
        return value

    def strings(key: str) -> dict[str, str]:
        value = metadata.get(key) or {}
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ObjectDecodeError(f"metadata {key} is not a map of strings")
        return dict(value)

    owners = metadata.get("ownerReferences") or []
    finalizers = metadata.get("finalizers") or []
    if not isinstance(owners, list) or not all(isinstance(o, dict) for o in owners):
        raise ObjectDecodeError("metadata ownerReferences is not a list of objects")
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        raise ObjectDecodeError("metadata finalizers is not a list of strings")
    return ObjectMeta(
        name=text("name"), namespace=text("namespace"), uid=text("uid"),
        resource_version=text("resourceVersion"),
        creation_timestamp=text("creationTimestamp") or None,
        deletion_timestamp=text("deletionTimestamp") or None,
        labels=strings("labels"), annotations=strings("annotations"),
        owner_references=tuple(
            OwnerReference(api_version=text("apiVersion", o), kind=text("kind", o),
                           name=text("name", o), uid=text("uid", o),
                           controller=o.get("controller") is True) for o in owners),
        finalizers=tuple(finalizers))


# ---- the kinds decoded in full: each returns its fields and whether it skipped any --------
def _configmap(object_: _Message) -> tuple[dict[str, Any], bool]:
    body: dict[str, Any] = {}
    skipped = False
    for field in object_.fields():
        if field.number == 2:
            key, text = _map_entry(field.message(), _Message.text)
            body.setdefault("data", {})[key] = text
        elif field.number == 3:
            key, data = _map_entry(field.message(), _base64)
            body.setdefault("binaryData", {})[key] = data
        elif field.number == 4:
            body["immutable"] = bool(field.integer())
        elif field.number != 1:
            skipped = True
    return body, skipped


def _secret(object_: _Message) -> tuple[dict[str, Any], bool]:
    body: dict[str, Any] = {}
    skipped = False
    for field in object_.fields():
        if field.number == 2:
            key, data = _map_entry(field.message(), _base64)
            body.setdefault("data", {})[key] = data
        elif field.number == 3:
            kind = field.text()
            if kind:
                body["type"] = kind
        elif field.number == 5:
            body["immutable"] = bool(field.integer())
        elif field.number != 1:
            skipped = True  # stringData (4) is write-only: never stored
    return body, skipped


_CONDITION_STRINGS = {1: "type", 2: "status", 5: "reason", 6: "message"}


def _namespace_condition(message: _Message) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for field in message.fields():
        if field.number in _CONDITION_STRINGS:
            found[_CONDITION_STRINGS[field.number]] = field.text()
        elif field.number == 4:
            found["lastTransitionTime"] = _time(field.message())
    return found


def _namespace(object_: _Message) -> tuple[dict[str, Any], bool]:
    body: dict[str, Any] = {}
    skipped = False
    for field in object_.fields():
        if field.number == 2:
            spec = body.setdefault("spec", {})
            for inner in field.message().fields():
                if inner.number == 1:
                    spec.setdefault("finalizers", []).append(inner.text())
                else:
                    skipped = True
        elif field.number == 3:
            status = body.setdefault("status", {})
            for inner in field.message().fields():
                if inner.number == 1:
                    status["phase"] = inner.text()
                elif inner.number == 2:
                    status.setdefault("conditions", []).append(
                        _namespace_condition(inner.message()))
                else:
                    skipped = True
        elif field.number != 1:
            skipped = True
    return body, skipped


_FULL_KINDS: dict[tuple[str, str], Callable[[_Message], tuple[dict[str, Any], bool]]] = {
    ("v1", "ConfigMap"): _configmap,
    ("v1", "Secret"): _secret,
    ("v1", "Namespace"): _namespace,
}


def _not_decoded(kind: str, what: str) -> str:
    return (f"{what} of this {kind} is not decoded offline; `ocp-recovery snapshot browse` "
            "shows it whole")


def _decode_protobuf(value: bytes) -> DecodedObject:
    api_version = kind = ""
    raw: _Message | None = None
    for field in _Message(value, len(PROTOBUF_MAGIC), len(value)).fields():
        if field.number == 1:
            for inner in field.message().fields():
                if inner.number == 1:
                    api_version = inner.text()
                elif inner.number == 2:
                    kind = inner.text()
        elif field.number == 2:
            raw = field.message()
        elif field.number == 3 and field.text():
            raise ObjectDecodeError(f"the object at byte {field.at} is compressed "
                                    f"({field.text()}), which kube-apiserver never writes")
    if raw is None:
        raise ObjectDecodeError(f"the protobuf envelope ({len(value)} bytes) holds no object "
                                "(runtime.Unknown field 2)")
    metadata: dict[str, Any] = {}
    for field in raw.fields():
        if field.number == 1:
            metadata = _object_meta(field.message())
    document: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    full_kind = _FULL_KINDS.get((api_version, kind))
    if full_kind is None:
        document[NOT_DECODED_KEY] = _not_decoded(kind or "object", "the rest")
        complete = False
    else:
        body, skipped = full_kind(raw)
        document.update(body)
        complete = not skipped
        if skipped:
            document[NOT_DECODED_KEY] = _not_decoded(kind, "a field newer than this tool")
    return DecodedObject(api_version, kind, _meta_of(metadata), document, complete)


def _decode_json(value: bytes) -> DecodedObject:
    try:
        document = json.loads(value)
    except UnicodeDecodeError as exc:
        raise ObjectDecodeError(f"the JSON value is not UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ObjectDecodeError(f"malformed JSON at byte {exc.pos}: {exc.msg}") from None
    if not isinstance(document, dict):
        raise ObjectDecodeError(f"the JSON value is a {type(document).__name__}, not an object")
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ObjectDecodeError("the JSON object's metadata is not an object")
    metadata.pop("managedFields", None)  # not shown, as for protobuf values
    api_version, kind = document.get("apiVersion", ""), document.get("kind", "")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise ObjectDecodeError("the JSON object's apiVersion or kind is not a string")
    return DecodedObject(api_version, kind, _meta_of(metadata), document, complete=True)
