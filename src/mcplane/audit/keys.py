"""The Ed25519 keys that sign audit checkpoints.

Ed25519 rather than HMAC: a verifier holds only the *public* key, so whoever checks the log
(an auditor, a monitoring job) cannot forge a checkpoint with what they were given.

- **Private keys** (``audit.checkpoint_key``, a secret reference): PEM (PKCS #8, ``BEGIN PRIVATE
  KEY``), or the 32-byte seed in base64, base64url or hex.
- **Public keys** (``mcplane audit verify --public-key``, ``audit.checkpoint_public_keys``):
  ``ed25519:<base64url>`` as :func:`public_text` writes it, PEM (``BEGIN PUBLIC KEY``), the 32 raw
  bytes in base64 or hex, or a private key (its public half is taken).
- **Key id**: the first 16 hex digits of SHA-256 of the raw public key, carried by each checkpoint.
- **Generated keys**: with no key configured, a sink keeps one beside its checkpoints
  (:func:`load_or_create_key_file`): PEM, mode 0600, created once and atomically (several
  processes may race to create it; all end up with the same key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "generate_private_pem",
    "key_id",
    "load_or_create_key_file",
    "load_private_key",
    "load_public_key",
    "public_text",
]

_PREFIX = "ed25519:"


def _raw32(text: str) -> bytes | None:
    """32 bytes from hex, base64 or base64url text (padding optional), else ``None``."""
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    padded = text + "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):
        try:
            raw = base64.b64decode(padded.encode("ascii"), altchars=altchars, validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(raw) == 32:
            return raw
    return None


def load_private_key(text: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM or its 32-byte seed; ``ValueError`` (never echoing the key) otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ValueError("not a readable PEM private key (an unencrypted PKCS #8 Ed25519 key)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        return key
    raw = _raw32(text)
    if raw is None:
        raise ValueError("not an Ed25519 private key (PEM, or a 32-byte seed in base64 or hex)")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from ``ed25519:…``, PEM or raw text (a private key gives its public half)."""
    text = text.strip()
    if text.startswith(_PREFIX):
        text = text[len(_PREFIX) :]
    if text.startswith("-----BEGIN") and "PRIVATE" in text.split("\n", 1)[0]:
        return load_private_key(text).public_key()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ValueError("not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        return key
    raw = _raw32(text)
    if raw is None:
        raise ValueError("not an Ed25519 public key (ed25519:<base64url>, PEM, or 32 bytes in base64 or hex)")
    return Ed25519PublicKey.from_public_bytes(raw)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """``ed25519:<base64url, no padding>``: the form to pin with ``--public-key``."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return _PREFIX + base64.urlsafe_b64encode(_raw_public(public)).decode("ascii").rstrip("=")


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The first 16 hex digits of SHA-256 of the raw public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def generate_private_pem() -> str:
    """A new Ed25519 private key as unencrypted PKCS #8 PEM."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def load_or_create_key_file(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key in ``path``, created (mode 0600) when missing; ``(key, created)``.

    Written to a private temporary file and hard-linked into place, which fails if the name
    exists: two processes creating it at once both end up reading the one that won.
    """
    try:
        return load_private_key(path.read_text(encoding="ascii")), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, generate_private_pem().encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    created = True
    try:
        os.link(temporary, path)
    except FileExistsError:
        created = False
    finally:
        temporary.unlink()
    return load_private_key(path.read_text(encoding="ascii")), created
