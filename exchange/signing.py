"""Signed lineage: the coordinator's Ed25519 signature on every version id it commits.

A version id already commits to its record and, through its parents, to every version before it (a
hash chain), so the coordinator signs only the 32 bytes of the id (``bytes.fromhex(version_id)``).
Signatures live beside the records (the registry's ``version_signatures`` table), never inside what
an id hashes: a run has the same version ids with or without signing.

The private key stays outside the registry, in a file the operator names (``--signing-key``); the
public key and its fingerprint (the SHA-256 of the 32 raw public-key bytes) are recorded in the run's
record. A device that holds the public key verifies an exported file on its own
(:mod:`flonnx.exchange.verify_model`); a registry is verified against a key given on the command
line, or, saying so, against the key the run recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.hashing import sha256_hex

__all__ = [
    "PublicKey",
    "Signer",
    "SigningError",
    "load_public_key",
    "load_signer",
    "write_key_pair",
]


class SigningError(FlonnxError):
    """A signing key cannot be read or used; the message names the file and what was expected."""


def _id_bytes(version_id: str) -> bytes:
    try:
        data = bytes.fromhex(version_id)
    except ValueError:
        data = b""
    if len(data) != 32:
        raise SigningError(f"{version_id[:16]!r} is not a version id (64 hex digits)")
    return data


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key: what verifies the signatures of a run."""

    raw: bytes

    @property
    def hex(self) -> str:
        """The 32 raw bytes in hex (the form recorded in a run's record)."""
        return self.raw.hex()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw key bytes, in hex: the key's name in signatures and exports."""
        return sha256_hex(self.raw)

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        """The key from its 64 hex digits."""
        try:
            raw = bytes.fromhex(text.strip())
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise SigningError("an Ed25519 public key is 64 hex digits (32 bytes)")
        return cls(raw)

    def verifies(self, version_id: str, signature: str) -> bool:
        """Whether ``signature`` (hex) is this key's signature of ``version_id``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(bytes.fromhex(signature),
                                                                _id_bytes(version_id))
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    """The coordinator's private key, loaded from the file the operator named."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public = PublicKey(raw)

    def sign(self, version_id: str) -> str:
        """The signature (hex, 64 bytes) of the version id's 32 bytes."""
        return self._key.sign(_id_bytes(version_id)).hex()

    def run_record(self) -> dict[str, str]:
        """What a run records about its key (``signing_key`` in the run's record)."""
        return {"algorithm": "ed25519", "public_key": self.public.hex,
                "fingerprint": self.public.fingerprint}


def load_signer(path: str | Path) -> Signer:
    """The private key in ``path`` (PEM, PKCS#8, unencrypted, as ``flonnx lineage keygen`` writes)."""
    path = Path(path).expanduser()
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise SigningError(f"cannot read signing key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} holds a {type(key).__name__}; flonnx signs with Ed25519 keys "
                           "(flonnx lineage keygen makes one)")
    return Signer(key)


def load_public_key(path: str | Path) -> PublicKey:
    """A public key from ``path``: PEM (SubjectPublicKeyInfo) or the 64 hex digits of the raw key."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read public key {path}: {exc.strerror or exc}") from None
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise SigningError(f"{path} is not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
        return PublicKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    try:
        return PublicKey.from_hex(data.decode("ascii"))
    except (UnicodeDecodeError, SigningError):
        raise SigningError(f"{path} is neither a PEM public key nor 64 hex digits") from None


def write_key_pair(folder: str | Path, name: str = "signing") -> tuple[Path, Path, Path]:
    """A new key pair in ``folder``: ``NAME.key`` (PEM, mode 600), ``NAME.pub`` (PEM), ``NAME.pub.hex``.

    An existing file is never overwritten.
    """
    folder = Path(folder).expanduser()
    private, public, raw = (folder / f"{name}.key", folder / f"{name}.pub", folder / f"{name}.pub.hex")
    for path in (private, public, raw):
        if path.exists():
            raise SigningError(f"{path} exists; not replaced (choose another folder)")
    key = Ed25519PrivateKey.generate()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        public_key = key.public_key()
        public.write_bytes(public_key.public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
        raw.write_text(public_key.public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw).hex() + "\n")
    except OSError as exc:
        raise SigningError(f"cannot write the key pair in {folder}: {exc.strerror or exc}") from None
    return private, public, raw
