"""Checkpoints: signed over their canonical bytes, checked against a ring of public keys."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.checkpoints import (
    Checkpoint,
    KeyRing,
    Signer,
    checkpoint_from_json,
    generate_key_pem,
)

CHECKPOINT = Checkpoint("c1", "periodic", 1, 1000, "ab" * 32, 1000, 1_796_000_000_000)


def test_a_signed_checkpoint_checks_out_and_survives_json():
    """A checkpoint signed with a key verifies with its public key, also after a JSON round trip."""
    signer = Signer.from_pem(generate_key_pem())
    signed = signer.sign(CHECKPOINT)
    ring = KeyRing.from_pem([signer.public_pem()])
    assert signed.key_id == signer.key_id
    assert ring.check(signed) is None
    assert ring.check(checkpoint_from_json(signed.to_json())) is None


def test_any_changed_field_breaks_the_signature():
    """Changing the range, the hash, the count or the removed runs makes the signature bad."""
    signer = Signer.from_pem(generate_key_pem())
    ring = KeyRing.from_pem([signer.public_pem()])
    signed = signer.sign(replace(CHECKPOINT, kind="retention", removed=((1, 5, "cd" * 32),)))
    for changed in (
        replace(signed, last_seq=999),
        replace(signed, last_hash="00" * 32),
        replace(signed, count=1),
        replace(signed, removed=((1, 6, "cd" * 32),)),
    ):
        assert ring.check(changed) == "bad signature"


def test_unknown_keys_and_unsigned_checkpoints_are_refused():
    """A checkpoint signed by another key, or not at all, does not check out."""
    ring = KeyRing.from_pem([Signer.from_pem(generate_key_pem()).public_pem()])
    stranger = Signer.from_pem(generate_key_pem()).sign(CHECKPOINT)
    assert "unknown key" in (ring.check(stranger) or "")
    assert "unknown key" in (ring.check(CHECKPOINT) or "")


def test_a_ring_holds_rotated_keys():
    """Checkpoints of the old and the new key both check out against a ring of both."""
    old, new = Signer.from_pem(generate_key_pem()), Signer.from_pem(generate_key_pem())
    ring = KeyRing.from_pem([old.public_pem(), new.public_pem()])
    assert ring.check(old.sign(CHECKPOINT)) is None
    assert ring.check(new.sign(CHECKPOINT)) is None


def test_keys_other_than_ed25519_are_refused(tmp_path: Path):
    """An EC key, a missing file or garbage is a clear AuditValidationError."""
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(AuditValidationError, match="Ed25519"):
        Signer.from_pem(ec_pem)
    with pytest.raises(AuditValidationError, match="Ed25519"):
        KeyRing.from_pem([ec_pem])
    with pytest.raises(AuditValidationError, match="cannot read"):
        Signer.from_file(tmp_path / "missing.pem")
    with pytest.raises(AuditValidationError):
        Signer.from_pem(b"not a key")


def test_malformed_checkpoint_json_is_refused():
    """A line without the fields, or of an unknown kind, raises AuditValidationError."""
    with pytest.raises(AuditValidationError):
        checkpoint_from_json({"checkpoint": {"chain": "c"}})
    with pytest.raises(AuditValidationError):
        checkpoint_from_json({"checkpoint": {**CHECKPOINT.to_json()["checkpoint"], "kind": "other"}})
    with pytest.raises(AuditValidationError):
        checkpoint_from_json({"nothing": 1})
