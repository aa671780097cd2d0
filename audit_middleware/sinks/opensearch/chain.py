"""The OpenSearch shipper's hash chains: one per tier, held under a lease, checkpointed into the stream.

**Lease.** A process extends chains only while it holds a slot: an exclusive ``flock`` on
``<state dir>/chains/slot-<n>.lock`` (the first free ``n``). The kernel releases it when
the process dies, so a restarted process takes the slot again and continues its chains;
two live processes never hold one slot, so never extend one chain. A child forked after
``--preload`` inherits the descriptor but takes a slot of its own. Chain ids are
``os-<machine>-<slot>-<tier>``, ``<machine>`` a random id kept in the state directory, so
two hosts never share a chain.

**Head.** Where each chain ends is kept in ``<state dir>/chains/<chain>.json``, rewritten
in place (one ``pwrite``) at every link, so it survives the process as the spool does
(neither is fsynced per record). Only when that file is missing is the store asked for
its last record of the chain (``find_head``); a new state directory means a new machine
id, so new chains, and no question to the network before the first record. Records
linked just before a crash and never spooled are lost with the process: ``verify`` then
reports their sequence numbers missing, which is what happened.

**Checkpoints** are ``Item`` values for the ``{prefix}_checkpoints`` data stream that the
shipper sends with its next batch (and spools like records when the node is away); they
also go to the external anchor when made. Their ``index`` names the data stream of the
chain's tier, from which ``verify`` derives what ISM may have deleted. A process that
ends (the sink closes or persists, a SIGTERM) checkpoints every chain with records since
its last checkpoint (``take_items(final=True)``): the chain's end is signed and anchored,
so ``verify`` tells a chain whose newest records were dropped from one that ended there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_middleware.model.chain import GENESIS, prepared_for_link, set_link
from audit_middleware.model.encoding import dumps, loads
from audit_middleware.model.timestamps import format_timestamp
from audit_middleware.sinks.chain import ChainPolicy
from audit_middleware.sinks.opensearch.bulk import Item
from audit_middleware.sinks.worker import after_fork_in_child

__all__ = ["ShipperChains"]

_MAX_SLOTS = 1024
_HEAD_BYTES = 256  # the head file is rewritten in place, padded to one fixed size

FindHead = Callable[[str], "tuple[int, str] | None"]


@dataclass
class _Head:
    chain: str
    stream: str
    seq: int = 0
    hash: str = GENESIS
    checkpoint_seq: int = 0
    checkpoint_ms: int = 0
    fd: int | None = None


class ShipperChains:
    """This process's chains (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        policy: ChainPolicy,
        checkpoints_stream: str,
        find_head: FindHead | None = None,
    ) -> None:
        self.directory = state_dir / "chains"
        self.policy = policy
        self._stream = checkpoints_stream
        self._find_head = find_head
        self._lock = threading.Lock()
        self._reset()
        after_fork_in_child(self._reset)

    def _reset(self) -> None:
        for head in getattr(self, "_heads", {}).values():  # a forked child: not its files to write
            if head.fd is not None:
                os.close(head.fd)
        self._slot_fd: int | None = None
        self._slot: int | None = None
        self._new_machine = False
        self._heads: dict[str, _Head] = {}
        self._items: list[Item] = []

    # -- the lease --------------------------------------------------------------

    def _machine(self) -> str:
        path = self.directory / "id"
        try:
            return path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            self._new_machine = True  # a new state directory: its chains are new, nothing to look up
            token = secrets.token_hex(6)
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="ascii") as out:
                    out.write(token)
            return path.read_text(encoding="ascii").strip()

    def _take_slot(self) -> int:
        if self._slot is not None:
            return self._slot
        self.directory.mkdir(parents=True, exist_ok=True)
        for slot in range(_MAX_SLOTS):
            fd = os.open(self.directory / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._slot_fd, self._slot = fd, slot
            return slot
        raise RuntimeError(f"all {_MAX_SLOTS} chain slots in {self.directory} are held")

    # -- linking ----------------------------------------------------------------

    def link(self, document: dict[str, Any], stream: str, tier: str) -> dict[str, Any]:
        """Give ``document`` (bound for ``stream``) its place in this process's chain of ``tier``;
        returns it as it is to be sent (``model.chain.prepared_for_link``: a document holding
        values JSON does not have, a ``Decimal`` say, is replaced by what its JSON reads back
        as, so its digest is of what ``verify`` will read)."""
        document, digest = prepared_for_link(document)  # outside the lock: no head needed
        with self._lock:
            head = self._head(tier, stream)
            link = set_link(document, head.chain, head.seq + 1, head.hash, digest)
            head.seq, head.hash = link.seq, link.hash
            self._checkpoint_if_due(head, force=False)
            self._persist(head)  # one pwrite: it survives the process, as the spool does
        return document

    def _head(self, tier: str, stream: str) -> _Head:
        key = f"{tier}"
        head = self._heads.get(key)
        if head is not None:
            return head
        chain = f"os-{self._machine_after_slot()}-{tier}"
        head = _Head(chain, stream, checkpoint_ms=int(time.time() * 1000))
        saved = self._read(chain)
        if saved is not None:
            head.seq, head.hash = int(saved["seq"]), str(saved["hash"])
            head.checkpoint_seq, head.checkpoint_ms = (
                int(saved["checkpoint_seq"]),
                int(saved["checkpoint_ms"]),
            )
        elif not self._new_machine:  # the head file is gone, the state directory is not: ask the store
            stored = self._stored_head(chain)
            if stored is not None:
                head.seq, head.hash = stored
        self._heads[key] = head
        return head

    def _machine_after_slot(self) -> str:
        slot = self._take_slot()
        return f"{self._machine()}-{slot}"

    def _stored_head(self, chain: str) -> tuple[int, str] | None:
        if self._find_head is None:
            return None
        try:
            return self._find_head(chain)
        except Exception:  # noqa: BLE001 - the node may be away: the local head stands
            return None

    def _read(self, chain: str) -> dict[str, Any] | None:
        try:
            saved = loads((self.directory / f"{chain}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return saved if isinstance(saved, dict) else None

    def _persist(self, head: _Head) -> None:
        state = {
            "seq": head.seq,
            "hash": head.hash,
            "checkpoint_seq": head.checkpoint_seq,
            "checkpoint_ms": head.checkpoint_ms,
        }
        try:
            if head.fd is None:
                head.fd = os.open(self.directory / f"{head.chain}.json", os.O_RDWR | os.O_CREAT, 0o600)
            os.pwrite(head.fd, dumps(state).ljust(_HEAD_BYTES), 0)
        except OSError:
            return  # the store's last record is the fallback at the next start

    # -- checkpoints ------------------------------------------------------------

    def _checkpoint_if_due(self, head: _Head, *, force: bool) -> None:
        now_ms = int(time.time() * 1000)
        checkpoint = self.policy.due(head, now_ms=now_ms, force=force, index=head.stream)
        if checkpoint is None:
            return
        head.checkpoint_seq, head.checkpoint_ms = head.seq, now_ms
        self._persist(head)
        document = {"@timestamp": format_timestamp(now_ms), "event": {"id": f"{head.chain}-{head.seq}"}}
        document.update(checkpoint.to_json())
        self._items.append(Item(self._stream, f"{head.chain}-{head.seq}", dumps(document)))
        if self.policy.anchor is not None:
            self.policy.anchor.publish([checkpoint])

    def take_items(self, *, final: bool = False) -> list[Item]:
        """The checkpoints made since the last call, as items for the shipper to send.

        ``final`` (the process or the sink is ending): checkpoint every chain that has records
        since its last checkpoint, due or not, so the chain's end is signed and anchored.
        """
        with self._lock:
            for head in self._heads.values():
                self._checkpoint_if_due(head, force=final)
            items, self._items = self._items, []
        return items

    def save(self) -> None:
        """Write every chain's head (the process is ending): the next holder of the slot continues it."""
        with self._lock:
            for head in self._heads.values():
                self._persist(head)

    def release(self) -> None:
        """Save the heads and give the slot up (the sink closed): the next sink may take it.

        Take the final checkpoints first (``take_items(final=True)``): the ones not taken are dropped.
        """
        self.save()
        with self._lock:
            if self._slot_fd is not None:
                os.close(self._slot_fd)  # closing the descriptor drops the flock
            for head in self._heads.values():
                if head.fd is not None:
                    os.close(head.fd)
                    head.fd = None
            self._reset()
