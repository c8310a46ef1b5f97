"""toolbox.objects.encoding on values a real kube-apiserver v1.20 wrote to etcd.

The fixtures in tests/unit/data/objects/ were made by make_fixtures.py there (its docstring
says how): each `<name>.bin` is an etcd value byte for byte, `<name>.kubectl.json` what
`kubectl get -o json` showed of the same object (managedFields dropped).
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from toolbox.objects.encoding import (
    NOT_DECODED_KEY,
    ObjectDecodeError,
    decode,
    encoding_of,
    encryption_key_of,
)

DATA = Path(__file__).parent / "data/objects"
LOGO = bytes(range(0, 256, 17)) + b"\x00\xff"  # make_fixtures.py's binaryData


def value(name: str) -> bytes:
    return (DATA / f"{name}.bin").read_bytes()


def shown_by_kubectl(name: str) -> dict[str, Any]:
    """kubectl's view, less resourceVersion: the API server clears it before writing (the
    key's mod_revision is the object's resourceVersion)."""
    shown: dict[str, Any] = json.loads((DATA / f"{name}.kubectl.json").read_text())
    del shown["metadata"]["resourceVersion"]
    return shown


# ---- a small protobuf writer, to build damaged and extended variants of the real values ----
def varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def envelope_parts(real: bytes) -> tuple[bytes, bytes]:
    """(typeMeta field, raw payload) of a real value: `k8s\\x00`, field 1, field 2, ..."""
    type_meta_end = 6 + real[5]  # a one-byte length: "v1"/"ConfigMap" is short
    assert real[4] == 0x0A and real[type_meta_end] == 0x12
    length, pos, shift = 0, type_meta_end + 1, 0
    while True:
        length |= (real[pos] & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not real[pos - 1] & 0x80:
            break
    return real[4:type_meta_end], real[pos:pos + length]


UNKNOWN_FIELDS = (varint(99 << 3 | 0) + varint(2**63)              # varint
                  + varint(98 << 3 | 1) + b"\x01" * 8              # fixed64
                  + length_delimited(97, b"\x0a\x03abc")           # bytes / message
                  + varint(96 << 3 | 5) + b"\x02" * 4              # fixed32
                  + varint(95 << 3 | 3) + varint(1 << 3 | 0) + b"\x07"   # a group ...
                  + varint(94 << 3 | 3) + varint(94 << 3 | 4)      # ... holding a group
                  + varint(95 << 3 | 4))


# ---- the kinds decoded in full ------------------------------------------------------------
@pytest.mark.parametrize("name", ["configmap", "namespace"])
def test_a_fully_decoded_kind_is_what_kubectl_showed(name: str) -> None:
    decoded = decode(value(name))
    assert decoded.complete
    assert decoded.document == shown_by_kubectl(name)


def test_configmap_facts() -> None:
    decoded = decode(value("configmap"))
    shown = shown_by_kubectl("configmap")
    assert (decoded.api_version, decoded.kind) == ("v1", "ConfigMap")
    assert (decoded.meta.name, decoded.meta.namespace) == ("app-config", "recovery-demo")
    assert decoded.meta.uid == shown["metadata"]["uid"]
    assert decoded.meta.creation_timestamp == shown["metadata"]["creationTimestamp"]
    assert decoded.meta.deletion_timestamp is None
    assert decoded.meta.labels == {"app.kubernetes.io/name": "web", "tier": "frontend"}
    assert decoded.meta.annotations == {"example.com/owner": "team storage"}
    assert decoded.document["data"] == {"app.properties": "mode=safe\nretries=3\n",
                                        "greeting": "héllo, wörld"}
    assert base64.b64decode(decoded.document["binaryData"]["logo.bin"]) == LOGO


def test_namespace_is_cluster_scoped_with_its_spec_and_status() -> None:
    decoded = decode(value("namespace"))
    assert (decoded.meta.name, decoded.meta.namespace) == ("recovery-demo", "")
    assert decoded.document["spec"] == {"finalizers": ["kubernetes"]}
    assert decoded.document["status"] == {"phase": "Active"}


# ---- other built-in kinds: the metadata, and a note -----------------------------------
def test_an_owned_deleted_object_has_its_whole_metadata() -> None:
    decoded = decode(value("replicaset"))
    shown = shown_by_kubectl("replicaset")
    owner = shown_by_kubectl("deployment")["metadata"]
    assert (decoded.api_version, decoded.kind) == ("apps/v1", "ReplicaSet")
    assert decoded.document["metadata"] == shown["metadata"]
    assert decoded.meta.uid == shown["metadata"]["uid"]
    assert decoded.meta.deletion_timestamp == shown["metadata"]["deletionTimestamp"]
    assert decoded.meta.finalizers == ("example.com/keep-until-reviewed",)
    assert decoded.meta.annotations == {"deployment.kubernetes.io/revision": "1"}
    [reference] = decoded.meta.owner_references
    assert (reference.api_version, reference.kind, reference.name, reference.uid,
            reference.controller) == ("apps/v1", "Deployment", "web", owner["uid"], True)


def test_a_kind_not_decoded_in_full_says_so_and_how_to_see_it() -> None:
    decoded = decode(value("deployment"))
    assert not decoded.complete
    assert decoded.document["metadata"] == shown_by_kubectl("deployment")["metadata"]
    assert "spec" not in decoded.document
    assert "ocp-recovery snapshot browse" in decoded.document[NOT_DECODED_KEY]


# ---- JSON ---------------------------------------------------------------------------------
def test_a_custom_resource_is_its_json_without_managed_fields() -> None:
    decoded = decode(value("widget"))
    shown = shown_by_kubectl("widget")
    assert decoded.complete
    assert (decoded.api_version, decoded.kind) == ("example.com/v1", "Widget")
    assert decoded.document == shown
    assert decoded.meta.uid == shown["metadata"]["uid"]
    assert decoded.meta.labels == {"colour": "blue"}


def test_malformed_json_says_where() -> None:
    real = value("widget")
    with pytest.raises(ObjectDecodeError, match=r"malformed JSON at byte \d+: Unterminated"):
        decode(real[:-40])


# ---- what the first bytes say -------------------------------------------------------------
@pytest.mark.parametrize(("name", "encoding"), [
    ("configmap", "protobuf"), ("replicaset", "protobuf"), ("secret", "encrypted"),
    ("widget", "json")])
def test_encoding_of_each_kind_of_value(name: str, encoding: str) -> None:
    assert encoding_of(value(name)) == encoding


@pytest.mark.parametrize("other", [b"", b"k8s", b"\x00\x01binary", b"[1, 2]", b"k8s:enc"])
def test_encoding_of_anything_else_is_other(other: bytes) -> None:
    assert encoding_of(other) == "other"
    with pytest.raises(ObjectDecodeError, match="neither protobuf"):
        decode(other)


def test_the_key_of_an_encrypted_value() -> None:
    assert encryption_key_of(value("secret")) == ("aescbc", "1")
    assert encryption_key_of(b"k8s:enc:kms:v1:vault-kms:\x00\x20...") == ("kms", "vault-kms")
    assert encryption_key_of(value("configmap")) is None
    assert encryption_key_of(b"k8s:enc:aescbc") is None


def test_an_encrypted_value_is_not_decoded() -> None:
    with pytest.raises(ObjectDecodeError, match=r"encrypted at rest \(aescbc, key '1'\)"):
        decode(value("secret"))


# ---- damaged values: ObjectDecodeError, never IndexError -----------------------------------
def test_every_truncation_of_a_real_value_is_refused() -> None:
    real = value("configmap")
    # The last 4 bytes are the empty contentEncoding and contentType: without them the
    # envelope is still whole.
    for cut in range(len(b"k8s\x00"), len(real) - 4):
        with pytest.raises(ObjectDecodeError, match=r"^truncated|holds no object"):
            decode(real[:cut])


def test_a_corrupted_varint_is_refused_with_its_offset() -> None:
    real = value("configmap")
    with pytest.raises(ObjectDecodeError, match="corrupted varint at byte 5"):
        decode(real[:5] + b"\xff" * 11 + real[16:])


@pytest.mark.parametrize(("damaged", "message"), [
    (b"k8s\x00\x0f", "at byte 4 has wire type 7"),
    (b"k8s\x00\x00", "field number 0 at byte 4"),
    (b"k8s\x00\x0c", "ends a group that never started"),
    (b"k8s\x00\x0b\x08\x01", "group of field 1 at byte 4 has no end"),
    (b"k8s\x00\x08\x01", "field 1 at byte 4 is a number where a string or message belongs"),
])
def test_a_broken_field_is_refused(damaged: bytes, message: str) -> None:
    with pytest.raises(ObjectDecodeError, match=message):
        decode(damaged)


@pytest.mark.parametrize("name", ["configmap", "replicaset", "widget"])
def test_any_damaged_byte_decodes_or_is_refused_cleanly(name: str) -> None:
    real = value(name)
    for at in range(len(real)):
        for damage in (0xFF, 0x00, real[at] ^ 0x80):
            with contextlib.suppress(ObjectDecodeError):  # any other exception fails
                decode(real[:at] + bytes([damage]) + real[at + 1:])


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    type_meta, raw = envelope_parts(value("configmap"))
    in_envelope = b"k8s\x00" + type_meta + UNKNOWN_FIELDS + length_delimited(2, raw)
    assert decode(in_envelope).document == shown_by_kubectl("configmap")
    # In a kind decoded in full, a field this tool does not know makes it incomplete.
    in_object = b"k8s\x00" + type_meta + length_delimited(2, raw + UNKNOWN_FIELDS)
    decoded = decode(in_object)
    assert not decoded.complete
    assert decoded.document["data"] == shown_by_kubectl("configmap")["data"]
    assert "a field newer than this tool" in decoded.document[NOT_DECODED_KEY]
