"""toolbox.objects.encryption on a Secret a real kube-apiserver v1.20 encrypted with the
sandbox's aescbc key (tests/unit/data/objects/make_fixtures.py made both files)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_objects_encoding import DATA, shown_by_kubectl, value
from toolbox.objects.encoding import decode
from toolbox.objects.encryption import (
    DecryptionFailed,
    EncryptionConfig,
    EncryptionConfigError,
    UnknownEncryptionKey,
)

CONFIG_FILE = DATA / "encryption-config.yaml"
SANDBOX_SECRET = "Kjh5MBeCvLFX7rI50jaibYUc4k79RUZJNPY5Re6NQVs="  # the fixture's throw-away key
OTHER_SECRET = base64.b64encode(b"\x01" * 32).decode()


def sandbox_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CONFIG_FILE.read_text())
    return document


def parsed(document: dict[str, Any]) -> EncryptionConfig:
    return EncryptionConfig.parse(yaml.safe_dump(document), "/etc/enc/encryption-config")


def with_secrets_providers(*providers: dict[str, Any]) -> dict[str, Any]:
    document = sandbox_config()
    document["resources"] = [{"resources": ["secrets"], "providers": list(providers)}]
    return document


def aescbc(name: str, secret: str = SANDBOX_SECRET) -> dict[str, Any]:
    return {"aescbc": {"keys": [{"name": name, "secret": secret}]}}


def test_the_secret_decrypts_to_what_kubectl_showed() -> None:
    config = EncryptionConfig.parse(CONFIG_FILE.read_bytes(), str(CONFIG_FILE))
    decoded = decode(config.decrypt(value("secret"), "secrets"))
    assert decoded.complete
    assert decoded.document == shown_by_kubectl("secret")
    assert decoded.meta.uid == shown_by_kubectl("secret")["metadata"]["uid"]
    assert decoded.document["type"] == "kubernetes.io/basic-auth"
    data = {k: base64.b64decode(v) for k, v in decoded.document["data"].items()}
    assert data == {"username": b"admin", "password": b"s3cr\x00t-\xff"}


def test_key_names_per_resource() -> None:
    config = EncryptionConfig.parse(CONFIG_FILE.read_text(), str(CONFIG_FILE))
    assert config.key_names("secrets") == {("aescbc", "1")}
    assert config.key_names("configmaps") == frozenset()  # not encrypted: identity
    assert "Kjh5MB" not in repr(config)  # key material stays out of logs


def test_a_plaintext_value_passes_through() -> None:
    config = EncryptionConfig.parse(CONFIG_FILE.read_bytes(), str(CONFIG_FILE))
    assert config.decrypt(value("configmap"), "configmaps") == value("configmap")


def test_every_entry_listing_the_resource_adds_its_keys() -> None:
    document = sandbox_config()
    document["resources"] = [
        {"resources": ["configmaps", "secrets"], "providers": [aescbc("0", OTHER_SECRET)]},
        {"resources": ["routes.route.openshift.io"], "providers": [aescbc("9")]},
        {"resources": ["secrets"], "providers": [aescbc("1"), {"identity": {}}]},
    ]
    config = parsed(document)
    assert config.key_names("secrets") == {("aescbc", "0"), ("aescbc", "1")}
    assert config.key_names("routes.route.openshift.io") == {("aescbc", "9")}
    assert decode(config.decrypt(value("secret"), "secrets")).meta.name == "db-credentials"


def test_a_key_name_the_config_lacks_is_named() -> None:
    config = parsed(with_secrets_providers(aescbc("2"), {"identity": {}}))
    with pytest.raises(UnknownEncryptionKey) as raised:
        config.decrypt(value("secret"), "secrets")
    assert "aescbc key '1'" in str(raised.value)
    assert "/etc/enc/encryption-config" in str(raised.value)
    assert "it has: aescbc key '2', identity" in str(raised.value)


def test_a_key_listed_for_another_resource_does_not_read_it() -> None:
    document = sandbox_config()
    document["resources"][0]["resources"] = ["configmaps"]
    with pytest.raises(UnknownEncryptionKey, match=r"for secrets \(it has: identity\)"):
        parsed(document).decrypt(value("secret"), "secrets")


def test_the_right_name_with_another_secret_fails_to_decrypt() -> None:
    config = parsed(with_secrets_providers(aescbc("1", OTHER_SECRET)))
    with pytest.raises(DecryptionFailed, match="does not decrypt with aescbc key '1'"):
        config.decrypt(value("secret"), "secrets")


def test_a_cut_ciphertext_fails_to_decrypt() -> None:
    config = EncryptionConfig.parse(CONFIG_FILE.read_bytes(), str(CONFIG_FILE))
    with pytest.raises(DecryptionFailed, match="damaged or cut short"):
        config.decrypt(value("secret")[:-5], "secrets")


@pytest.mark.parametrize("provider", [
    {"aesgcm": {"keys": [{"name": "1", "secret": SANDBOX_SECRET}]}},
    {"secretbox": {"keys": [{"name": "1", "secret": SANDBOX_SECRET}]}},
    {"kms": {"name": "1", "endpoint": "unix:///var/run/kms.sock"}},
])
def test_other_providers_are_read_but_not_decrypted_offline(provider: dict[str, Any]) -> None:
    [kind] = provider
    config = parsed(with_secrets_providers(provider))
    assert config.key_names("secrets") == {(kind, "1")}
    # The real ciphertext under that provider's prefix: what such a config would have written.
    written = value("secret").replace(b"k8s:enc:aescbc:", f"k8s:enc:{kind}:".encode(), 1)
    with pytest.raises(EncryptionConfigError, match=f"{kind} is not supported offline") as raised:
        config.decrypt(written, "secrets")
    assert not isinstance(raised.value, UnknownEncryptionKey | DecryptionFailed)


@pytest.mark.parametrize(("providers", "message"), [
    ([aescbc("1", "not base64!")], r"providers\[0\].aescbc.keys\[0\].secret is not base64"),
    ([aescbc("1", base64.b64encode(b"k" * 20).decode())],
     r"is 20 bytes, not one of 16, 24, 32 \(the aescbc key sizes\)"),
    ([aescbc("")], r"keys\[0\].name is missing"),
    ([{"aescbc": {"keys": []}}], "aescbc.keys is missing or empty"),
    ([{**aescbc("1"), "identity": {}}], "must name exactly one provider"),
    ([{"rot13": {}}], "must name exactly one provider"),
    ([], "providers is missing or empty"),
])
def test_a_broken_config_is_refused_without_showing_keys(providers: list[Any],
                                                          message: str) -> None:
    with pytest.raises(EncryptionConfigError, match=message) as raised:
        parsed(with_secrets_providers(*providers))
    assert "/etc/enc/encryption-config" in str(raised.value)
    assert SANDBOX_SECRET not in str(raised.value)


@pytest.mark.parametrize(("text", "message"), [
    ("resources: [", "is not YAML"),
    ("- a list", "not a YAML mapping"),
    ("apiVersion: v1\nkind: EncryptionConfig\nresources: []\n", "kind 'EncryptionConfig', not"),
    ("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n", "resources is"),
])
def test_a_file_that_is_not_an_encryption_configuration_is_refused(text: str,
                                                                    message: str) -> None:
    with pytest.raises(EncryptionConfigError, match=message):
        EncryptionConfig.parse(text, str(Path("/etc/enc/encryption-config")))
