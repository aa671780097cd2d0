"""Signed checkpoints of a chain, and the Ed25519 keys that sign and check them.

A checkpoint says: chain ``chain`` had, from ``first_seq`` to ``last_seq``, ``count``
records, and the last one's hash was ``last_hash``, at ``created_ms``. It is signed
(Ed25519, the ``cryptography`` package) over its canonical bytes (``model.canonical``),
so the store, the external anchor and an export carry the same checkpoint and any copy
can be checked against the public key.

Kinds:

* ``periodic``: written every N records or T seconds, and when a writer closes;
* ``retention``: the library removed records (SQLite retention); ``removed`` lists the
  runs ``[first_seq, last_seq, hash of last_seq]`` it deleted, so ``verify`` tells them
  from records removed by anyone else and can link across the gap;
* ``index`` (OpenSearch): the backing index that held the range, so records removed
  with a whole index by ISM are accounted for by the tier policies and snapshots.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.canonical import canonical_bytes

__all__ = [
    "CHECKPOINT_KEY",
    "Checkpoint",
    "CheckpointKind",
    "KeyRing",
    "Signer",
    "checkpoint_from_json",
    "generate_key_pem",
]

CheckpointKind = Literal["periodic", "retention"]
CHECKPOINT_KEY: Final = "checkpoint"
"""The one key of a checkpoint's JSON line (anchor, export), beside records in a file."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint of chain ``chain``; ``signature`` is empty when no key was configured."""

    chain: str
    kind: CheckpointKind
    first_seq: int
    last_seq: int
    last_hash: str
    count: int
    created_ms: int
    removed: tuple[tuple[int, int, str], ...] = ()
    index: str | None = None
    key_id: str = ""
    signature: str = field(default="", compare=False)

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "chain": self.chain,
            "kind": self.kind,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "count": self.count,
            "created_ms": self.created_ms,
            "key_id": self.key_id,
        }
        if self.removed:
            fields["removed"] = [list(run) for run in self.removed]
        if self.index is not None:
            fields["index"] = self.index
        return fields

    def body(self) -> bytes:
        """The canonical bytes that are signed: every field but the signature."""
        return canonical_bytes(self._fields())

    def to_json(self) -> dict[str, Any]:
        """The ``{"checkpoint": {...}}`` object of an anchor or export line."""
        return {CHECKPOINT_KEY: {**self._fields(), "signature": self.signature}}


def checkpoint_from_json(value: Mapping[str, Any]) -> Checkpoint:
    """The checkpoint of a ``{"checkpoint": {...}}`` object; ``AuditValidationError`` if malformed."""
    fields = value.get(CHECKPOINT_KEY)
    if not isinstance(fields, Mapping):
        raise AuditValidationError("not a checkpoint")
    try:
        kind = str(fields["kind"])
        if kind not in ("periodic", "retention"):
            raise AuditValidationError(f"unknown checkpoint kind {kind!r}")
        removed = tuple((int(run[0]), int(run[1]), str(run[2])) for run in fields.get("removed", ()))
        index = fields.get("index")
        return Checkpoint(
            chain=str(fields["chain"]),
            kind="retention" if kind == "retention" else "periodic",
            first_seq=int(fields["first_seq"]),
            last_seq=int(fields["last_seq"]),
            last_hash=str(fields["last_hash"]),
            count=int(fields["count"]),
            created_ms=int(fields["created_ms"]),
            removed=removed,
            index=None if index is None else str(index),
            key_id=str(fields.get("key_id", "")),
            signature=str(fields.get("signature", "")),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise AuditValidationError(f"malformed checkpoint: {exc}") from exc


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """Signs checkpoints with an Ed25519 private key (PEM, PKCS#8, unencrypted or with ``password``)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = _key_id(private_key.public_key())
        """The first 16 hex digits of SHA-256 of the raw public key: names the key in each checkpoint."""

    @classmethod
    def from_pem(cls, pem: bytes, password: bytes | None = None) -> Signer:
        """Load a PEM private key; ``AuditValidationError`` unless it is an Ed25519 key."""
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (ValueError, TypeError) as exc:
            raise AuditValidationError(f"cannot read the checkpoint signing key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditValidationError("the checkpoint signing key must be an Ed25519 key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], password: bytes | None = None) -> Signer:
        """Load the PEM private key in ``path``."""
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise AuditValidationError(f"cannot read the checkpoint signing key {path}: {exc}") from exc
        return cls.from_pem(pem, password)

    def public_pem(self) -> bytes:
        """The public key, PEM (SubjectPublicKeyInfo): what ``verify --public-key`` reads."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, checkpoint: Checkpoint) -> Checkpoint:
        """``checkpoint`` with this key's id and signature."""
        named = replace(checkpoint, key_id=self.key_id, signature="")
        signature = base64.b64encode(self._key.sign(named.body())).decode("ascii")
        return replace(named, signature=signature)


class KeyRing:
    """The public keys ``verify`` accepts (several, across a key rotation), by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys = {_key_id(key): key for key in keys}

    @classmethod
    def from_pem(cls, pems: Sequence[bytes]) -> KeyRing:
        """Public (or private) PEM keys; ``AuditValidationError`` for anything else."""
        keys: list[Ed25519PublicKey] = []
        for pem in pems:
            try:
                key: object = serialization.load_pem_public_key(pem)
            except ValueError:
                try:
                    key = serialization.load_pem_private_key(pem, password=None).public_key()
                except (ValueError, TypeError) as exc:
                    raise AuditValidationError(f"cannot read a checkpoint public key: {exc}") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise AuditValidationError("checkpoint keys must be Ed25519 keys")
            keys.append(key)
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def check(self, checkpoint: Checkpoint) -> str | None:
        """None when a key of the ring signed ``checkpoint``; otherwise why not."""
        key = self._keys.get(checkpoint.key_id)
        if key is None:
            return f"signed by an unknown key {checkpoint.key_id or '(none)'}"
        try:
            key.verify(base64.b64decode(checkpoint.signature, validate=True), checkpoint.body())
        except (InvalidSignature, ValueError):
            return "bad signature"
        return None


def generate_key_pem() -> bytes:
    """A new Ed25519 private key, PEM (PKCS#8, unencrypted): keep it off the store's host if you can."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
