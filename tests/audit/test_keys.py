"""Checkpoint keys: the forms they are given in, the generated key file, and the audit config keys."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from mcplane.audit.keys import (
    generate_private_pem,
    key_id,
    load_or_create_key_file,
    load_private_key,
    load_public_key,
    public_text,
)
from mcplane.config import AuditSection, load_config
from mcplane.errors import ConfigError

PEM = generate_private_pem()
KEY = load_private_key(PEM)
SEED = KEY.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
RAW_PUBLIC = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.mark.parametrize(
    "text",
    [PEM, base64.b64encode(SEED).decode(), base64.urlsafe_b64encode(SEED).decode().rstrip("="), SEED.hex()],
    ids=["pem", "base64", "base64url", "hex"],
)
def test_a_private_key_is_read_from_each_form(text: str) -> None:
    assert key_id(load_private_key(text)) == key_id(KEY)


@pytest.mark.parametrize(
    "text",
    [
        public_text(KEY),
        KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        base64.b64encode(RAW_PUBLIC).decode(),
        RAW_PUBLIC.hex(),
        PEM,
    ],
    ids=["ed25519-text", "pem", "base64", "hex", "private-pem"],
)
def test_a_public_key_is_read_from_each_form(text: str) -> None:
    assert key_id(load_public_key(text)) == key_id(KEY)


def test_bad_keys_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="not an Ed25519 private key") as refused:
        load_private_key("s3cr3t-but-not-a-key")
    assert "s3cr3t" not in str(refused.value)
    with pytest.raises(ConfigError) as invalid:
        load_config(None, environ={"MCPLANE__AUDIT__CHECKPOINT_KEY": "s3cr3t-but-not-a-key"})
    assert "audit.checkpoint_key: not an Ed25519 private key" in invalid.value.message
    assert "s3cr3t" not in invalid.value.message
    with pytest.raises(ValidationError, match="key #2"):
        AuditSection(checkpoint_public_keys=[public_text(KEY), "ed25519:nope"])


def test_the_audit_section_takes_durations_and_table_names() -> None:
    section = AuditSection.model_validate({"rotate_interval": "24h", "checkpoint_interval": "10s"})
    assert (section.rotate_interval, section.checkpoint_interval) == (86_400.0, 10.0)
    assert (section.on_broken_chain, section.rotate_bytes, section.checkpoint_every) == ("refuse", 104_857_600, 10_000)
    with pytest.raises(ValidationError, match="must be positive"):
        AuditSection.model_validate({"checkpoint_interval": "0s"})
    with pytest.raises(ValidationError, match="invalid audit table name"):
        AuditSection.model_validate({"checkpoint_table": "drop table x;"})
    with pytest.raises(ValidationError):
        AuditSection.model_validate({"on_broken_chain": "ignore"})


def test_the_key_file_is_created_once_private_and_shared_by_racing_writers(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.jsonl.checkpoints.key"
    results: list[tuple[str, bool]] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait(timeout=10)
        key, created = load_or_create_key_file(path)
        results.append((key_id(key), created))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len({ident for ident, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
