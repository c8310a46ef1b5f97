"""Values encrypted at rest: kube-apiserver's EncryptionConfiguration, read the way the
API server (1.20) reads it, and offline decryption of what OpenShift 4.3 writes (aescbc).

A value `k8s:enc:aescbc:v1:<key name>:` + 16-byte IV + AES-CBC ciphertext (PKCS#7 padded)
is read with the config's key of that name among the providers listed for its resource.
aesgcm, secretbox and kms are understood in the config but not decrypted offline.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from toolbox.objects.encoding import ENCRYPTED_PREFIX, encryption_key_of

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
KEYED_PROVIDERS = {"aescbc": (16, 24, 32), "aesgcm": (16, 24, 32), "secretbox": (32,)}
PROVIDERS = (*KEYED_PROVIDERS, "kms", "identity")
AES_BLOCK = 16


class EncryptionConfigError(ValueError):
    """The encryption config is unusable, or cannot decrypt this value offline."""


class UnknownEncryptionKey(EncryptionConfigError):
    """The value names a key the config does not have for its resource."""


class DecryptionFailed(EncryptionConfigError):
    """The key is there but the ciphertext does not decrypt: another secret, or damage."""


@dataclass(frozen=True)
class _Key:
    provider: str
    name: str  # "" for identity; a kms entry's plugin name
    secret: bytes = field(repr=False)  # empty for identity and kms (the key is in the KMS)

    @property
    def prefix(self) -> bytes:
        """What kube-apiserver puts before a value written with this key."""
        if self.provider == "identity":
            return b""
        return ENCRYPTED_PREFIX + f"{self.provider}:v1:{self.name}:".encode()

    def describe(self) -> str:
        return "identity" if self.provider == "identity" else f"{self.provider} key {self.name!r}"


@dataclass(frozen=True)
class _Entry:
    group_resources: frozenset[tuple[str, str]]  # (group, resource), "" for the core group
    keys: tuple[_Key, ...]  # the providers' keys in the order the API server tries them


def _group_resource(resource: str) -> tuple[str, str]:
    """"secrets" -> ("", "secrets"), "deployments.apps" -> ("apps", "deployments"), as
    apimachinery's ParseGroupResource does."""
    name, _, group = resource.partition(".")
    return group, name


@dataclass(frozen=True)
class EncryptionConfig:
    where: str  # the file, for messages
    entries: tuple[_Entry, ...]

    @classmethod
    def parse(cls, text: bytes | str, where: str) -> EncryptionConfig:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise EncryptionConfigError(f"{where} is not YAML: {exc}") from None
        if not isinstance(document, dict):
            raise EncryptionConfigError(f"{where} is not an {KIND} (not a YAML mapping)")
        if (document.get("apiVersion"), document.get("kind")) != (API_VERSION, KIND):
            raise EncryptionConfigError(
                f"{where} is apiVersion {document.get('apiVersion')!r} kind "
                f"{document.get('kind')!r}, not {API_VERSION} {KIND}")
        resources = document.get("resources")
        if not isinstance(resources, list) or not resources:
            raise EncryptionConfigError(f"{where}: resources is missing or empty")
        return cls(where, tuple(_parse_entry(entry, f"resources[{i}]", where)
                                for i, entry in enumerate(resources)))

    def _readers(self, resource: str) -> tuple[_Key, ...]:
        """Every entry that lists the resource adds its providers, in order (kube-apiserver
        1.20 appends them); a resource no entry lists is stored as it is."""
        wanted = _group_resource(resource)
        keys = tuple(key for entry in self.entries if wanted in entry.group_resources
                     for key in entry.keys)
        return keys or (_Key("identity", "", b""),)

    def key_names(self, resource: str) -> frozenset[tuple[str, str]]:
        """(provider, key name) of every key that can read `resource` ("secrets",
        "routes.route.openshift.io"); identity, which needs no key, is not one."""
        return frozenset((key.provider, key.name) for key in self._readers(resource)
                         if key.provider != "identity")

    def decrypt(self, value: bytes, resource: str) -> bytes:
        """The plaintext of a `k8s:enc:` value of `resource`; a value not encrypted is
        returned as it is (whatever the providers: offline there is nothing to refuse)."""
        if not value.startswith(ENCRYPTED_PREFIX):
            return value
        readers = self._readers(resource)
        for key in readers:
            if key.provider != "identity" and value.startswith(key.prefix):
                return self._decrypt_with(key, value[len(key.prefix):], resource)
        provider, name = encryption_key_of(value) or ("an unknown provider", "?")
        have = ", ".join(sorted(key.describe() for key in readers)) or "none"
        raise UnknownEncryptionKey(
            f"this {resource} value is encrypted with {provider} key {name!r}, which {self.where}"
            f" does not have for {resource} (it has: {have}); the value was written with "
            "another encryption config (an older or newer key revision)")

    def _decrypt_with(self, key: _Key, ciphertext: bytes, resource: str) -> bytes:
        if key.provider != "aescbc":
            raise EncryptionConfigError(
                f"this {resource} value is encrypted with {key.describe()}: {key.provider} is "
                "not supported offline (only aescbc, what OpenShift 4.3 uses, and identity); "
                "read it through a running kube-apiserver with that config")
        if len(ciphertext) < 2 * AES_BLOCK or len(ciphertext) % AES_BLOCK:
            raise DecryptionFailed(
                f"this {resource} value's aescbc data ({len(ciphertext)} bytes after the key "
                f"name {key.name!r}) is not a 16-byte IV and whole 16-byte blocks: the value is "
                "damaged or cut short")
        decryptor = Cipher(algorithms.AES(key.secret), modes.CBC(ciphertext[:AES_BLOCK])
                           ).decryptor()
        padded = decryptor.update(ciphertext[AES_BLOCK:]) + decryptor.finalize()
        pad = padded[-1]
        if not 1 <= pad <= AES_BLOCK or padded[-pad:] != bytes([pad]) * pad:
            raise DecryptionFailed(
                f"this {resource} value does not decrypt with aescbc key {key.name!r} of "
                f"{self.where} (bad padding): a key of that name but another secret, or a "
                "damaged value")
        return padded[:-pad]


def _parse_entry(entry: Any, path: str, where: str) -> _Entry:
    if not isinstance(entry, dict):
        raise EncryptionConfigError(f"{where}: {path} is not a mapping")
    resources, providers = entry.get("resources"), entry.get("providers")
    if not isinstance(resources, list) or not resources or not all(
            isinstance(r, str) and r for r in resources):
        raise EncryptionConfigError(f"{where}: {path}.resources is not a list of resource names")
    if not isinstance(providers, list) or not providers:
        raise EncryptionConfigError(f"{where}: {path}.providers is missing or empty")
    keys = tuple(key for i, provider in enumerate(providers)
                 for key in _parse_provider(provider, f"{path}.providers[{i}]", where))
    # `*.group` wildcards are 1.27+: kept as names no real resource has, so they match none.
    return _Entry(frozenset(_group_resource(r) for r in resources), keys)


def _parse_provider(provider: Any, path: str, where: str) -> list[_Key]:
    kinds = [k for k in PROVIDERS if isinstance(provider, dict) and k in provider]
    if len(kinds) != 1:
        raise EncryptionConfigError(
            f"{where}: {path} must name exactly one provider of {', '.join(PROVIDERS)}")
    kind = kinds[0]
    body = provider[kind]
    if kind == "identity":
        if body not in (None, {}):
            raise EncryptionConfigError(f"{where}: {path}.identity takes no settings")
        return [_Key("identity", "", b"")]
    if not isinstance(body, dict):
        raise EncryptionConfigError(f"{where}: {path}.{kind} is not a mapping")
    if kind == "kms":
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise EncryptionConfigError(f"{where}: {path}.kms.name is missing")
        return [_Key("kms", name, b"")]
    keys = body.get("keys")
    if not isinstance(keys, list) or not keys:
        raise EncryptionConfigError(f"{where}: {path}.{kind}.keys is missing or empty")
    return [_parse_key(kind, key, f"{path}.{kind}.keys[{i}]", where)
            for i, key in enumerate(keys)]


def _parse_key(kind: str, key: Any, path: str, where: str) -> _Key:
    # Messages name the key's path, never its secret.
    if not isinstance(key, dict):
        raise EncryptionConfigError(f"{where}: {path} is not a mapping")
    name, secret = key.get("name"), key.get("secret")
    if not isinstance(name, str) or not name:
        raise EncryptionConfigError(f"{where}: {path}.name is missing")
    if not isinstance(secret, str) or not secret:
        raise EncryptionConfigError(f"{where}: {path}.secret is missing")
    try:
        material = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionConfigError(f"{where}: {path}.secret is not base64") from None
    sizes = KEYED_PROVIDERS[kind]
    if len(material) not in sizes:
        raise EncryptionConfigError(
            f"{where}: {path}.secret is {len(material)} bytes, not one of "
            f"{', '.join(map(str, sizes))} (the {kind} key sizes)")
    return _Key(kind, name, material)
