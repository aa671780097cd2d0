"""Verifying hash chains: which records are intact, modified, missing, inserted, reordered or cut off.

The input is each chain's records in sequence order (``Entry``, from a store or a file:
``query.verify_sources``) and the checkpoints (the store's, the external anchor's, an
export's). The verifier keeps, per chain, the previous record, a window of recent
hashes (to place a record that sits in the wrong place) and the anomalies found (up to
``MAX_LISTED`` of each kind are named, all are counted): memory does not grow with the
number of records.

What each finding means (``model.chain`` defines the link):

* **modified**: the record's content no longer gives its hash; or a record's hash was
  recomputed after a change, so the next record, written after the original, no
  longer links to it;
* **missing**: sequence numbers with no record, not accounted for by a signed
  retention checkpoint or by the tier's ISM policy (those are **removed by retention**,
  see ``StreamRetention``);
* **inserted**: a record with no place in any chain (no link where records carry
  links, or a second record claiming a sequence number that another holds);
* **reordered**: an intact record found at another place than the one it was written
  at (its link points to a record elsewhere in the chain);
* **truncated**: the chain ends before the last record a checkpoint covers;
* **rewritten**: a checkpoint's last hash differs from the record it names (the chain
  was recomputed from some earlier record on); the finding names the range.

This module is long because the walk, the reconciliation of checkpoint copies and the
report they fill are one algorithm, read together when a finding is questioned.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from audit_middleware.model.chain import GENESIS, content_digest, link_hash, link_of
from audit_middleware.model.checkpoints import Checkpoint, KeyRing

__all__ = [
    "ChainReport",
    "Entry",
    "Finding",
    "StreamRetention",
    "VerifyReport",
    "entry_of",
    "verify_chains",
]

MAX_LISTED: Final = 1000  # findings named per kind and chain; the rest are counted
_WINDOW: Final = 65_536  # recent hashes kept to place a reordered record
CLOCK_SLACK_MS: Final = 300_000
"""How far the writers' clocks (checkpoint times) and the cluster's (index creation) may differ."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored record as the verifier sees it: its link, its content digest, where it is."""

    chain: str | None
    seq: int
    prev: str
    hash: str
    digest: bytes
    event_id: str
    unix_ms: int
    where: str  # how a reader finds it: "row 17", "audit-standard-000001/0192...", "line 42"

    @property
    def intact(self) -> bool:
        """Whether the record's content still gives its hash (for its own ``prev``)."""
        return link_hash(self.prev, self.digest) == self.hash


def entry_of(document: dict[str, Any], where: str, unix_ms: int = 0) -> Entry:
    """The entry of a stored document (``chain`` None when it carries no valid link)."""
    link = link_of(document)
    event = document.get("event")
    event_id = str(event.get("id", "")) if isinstance(event, dict) else ""
    digest = content_digest(document)
    if link is None:
        return Entry(None, 0, GENESIS, "", digest, event_id, unix_ms, where)
    return Entry(link.chain, link.seq, link.prev, link.hash, digest, event_id, unix_ms, where)


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomaly: its kind, the sequence numbers (first, last), the record, what was seen."""

    kind: str
    first_seq: int
    last_seq: int
    event_id: str = ""
    where: str = ""
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        """The finding as a JSON object (``verify --json``)."""
        return {
            "kind": self.kind,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "event_id": self.event_id,
            "where": self.where,
            "detail": self.detail,
        }


TAMPER_KINDS: Final = ("modified", "missing", "inserted", "reordered", "truncated", "rewritten", "checkpoint")
RANGE_KINDS: Final = ("missing", "retention")  # counted by the sequence numbers they cover
"""``retention`` findings name the ranges ISM removed (OpenSearch); they are not tampering."""


@dataclass(frozen=True)
class StreamRetention:
    """What the cluster says about one data stream's retention, for the ranges ISM may have removed.

    ISM deletes a tier's backing indices whole, oldest first, once they are ``delete_age``
    old (after a snapshot into ``repository`` when the policy archives), with no library
    code running. So a missing *start* of a chain is retention when: a backing index of the
    stream is gone (``gone``: the generations below the oldest one left); the records were
    written before the oldest index left was created (``oldest_created_ms``, so they could
    not be in it); the checkpoints covering them are older than ``horizon_ms`` (now less
    the delete age, plus one rollover age: an index is created before its first records);
    and every gone index is in a snapshot of ``repository`` (``unarchived`` lists those that
    are not). Anything else is *missing*.
    """

    horizon_ms: int
    delete_age: str = ""
    oldest_index: str | None = None
    oldest_created_ms: int | None = None
    gone: tuple[str, ...] = ()
    repository: str | None = None
    unarchived: tuple[str, ...] = ()


@dataclass
class ChainReport:
    """What was found in one chain (one writer)."""

    chain: str
    first_seq: int = 0
    last_seq: int = 0
    first_ms: int = 0
    last_ms: int = 0
    records: int = 0
    verified: int = 0
    removed_by_retention: int = 0
    checkpoints: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        """Count ``finding`` (by the sequence numbers it covers) and name it while under the limit."""
        size = finding.last_seq - finding.first_seq + 1 if finding.kind in RANGE_KINDS else 1
        before = self.counts.get(finding.kind, 0)
        self.counts[finding.kind] = before + size
        if sum(1 for f in self.findings if f.kind == finding.kind) < MAX_LISTED:
            self.findings.append(finding)

    @property
    def intact(self) -> bool:
        """No evidence of tampering."""
        return not any(self.counts.get(kind) for kind in TAMPER_KINDS)

    def as_json(self) -> dict[str, Any]:
        """The chain's report as a JSON object."""
        return {
            "chain": self.chain,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "records": self.records,
            "verified": self.verified,
            "removed_by_retention": self.removed_by_retention,
            "checkpoints": self.checkpoints,
            "counts": dict(self.counts),
            "findings": [finding.as_json() for finding in self.findings],
            "intact": self.intact,
        }


@dataclass
class VerifyReport:
    """The whole run: one report per chain, the records with no chain, the checkpoints' state."""

    chains: list[ChainReport] = field(default_factory=list)
    unchained_old: int = 0
    """Records without a link, older than every chain: written before chains existed."""
    inserted: list[Finding] = field(default_factory=list)
    inserted_count: int = 0
    checkpoint_problems: list[str] = field(default_factory=list)
    signatures_checked: bool = False
    anchored: int = 0

    @property
    def intact(self) -> bool:
        """No chain shows tampering, no record was slipped in, every checkpoint is sound."""
        return (
            all(chain.intact for chain in self.chains)
            and not self.inserted_count
            and not self.checkpoint_problems
        )

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON object."""
        return {
            "intact": self.intact,
            "signatures_checked": self.signatures_checked,
            "anchored_checkpoints": self.anchored,
            "chains": [chain.as_json() for chain in self.chains],
            "unchained_before_chains": self.unchained_old,
            "inserted": self.inserted_count,
            "inserted_records": [finding.as_json() for finding in self.inserted],
            "checkpoint_problems": list(self.checkpoint_problems),
        }


class _Checkpoints:
    """The usable checkpoints of each chain, after their signatures and copies were compared."""

    def __init__(
        self, stored: Iterable[Checkpoint | str], anchored: Iterable[Checkpoint | str], keys: KeyRing | None
    ) -> None:
        self.problems: list[str] = []
        self.by_chain: dict[str, dict[int, Checkpoint]] = {}
        self.removed: dict[str, list[tuple[int, int, str]]] = {}
        self.anchored = 0
        seen_in_store: set[tuple[str, str, int, str]] = set()
        for checkpoint in stored:
            if self._take(checkpoint, keys, "store"):
                assert isinstance(checkpoint, Checkpoint)
                seen_in_store.add(_identity(checkpoint))
        for checkpoint in anchored:
            if self._take(checkpoint, keys, "anchor"):
                assert isinstance(checkpoint, Checkpoint)
                self.anchored += 1
                if _identity(checkpoint) not in seen_in_store:
                    self.problems.append(
                        f"checkpoint of {checkpoint.chain} up to seq {checkpoint.last_seq} is in the anchor "
                        "but no longer in the store"
                    )
        for runs in self.removed.values():
            runs.sort()

    def _take(self, checkpoint: Checkpoint | str, keys: KeyRing | None, source: str) -> bool:
        if isinstance(checkpoint, str):
            self.problems.append(f"{source}: {checkpoint}")
            return False
        if keys is not None:
            problem = keys.check(checkpoint)
            if problem is not None:
                self.problems.append(
                    f"{source}: checkpoint of {checkpoint.chain} up to seq {checkpoint.last_seq}: {problem}"
                )
                return False
        if checkpoint.kind == "retention":
            known = self.removed.setdefault(checkpoint.chain, [])
            for run in checkpoint.removed:
                if run not in known:
                    known.append(run)
            return True
        chain = self.by_chain.setdefault(checkpoint.chain, {})
        other = chain.get(checkpoint.last_seq)
        if other is not None and other.last_hash != checkpoint.last_hash:
            self.problems.append(
                f"{source}: two checkpoints of {checkpoint.chain} at seq {checkpoint.last_seq} disagree"
            )
        elif checkpoint.count != checkpoint.last_seq - checkpoint.first_seq + 1:
            self.problems.append(
                f"{source}: checkpoint of {checkpoint.chain} up to seq {checkpoint.last_seq} counts "
                f"{checkpoint.count} records for seq {checkpoint.first_seq}-{checkpoint.last_seq}"
            )
        chain.setdefault(checkpoint.last_seq, checkpoint)
        return True


def _identity(checkpoint: Checkpoint) -> tuple[str, str, int, str]:
    return (checkpoint.chain, checkpoint.kind, checkpoint.last_seq, checkpoint.last_hash)


@dataclass(slots=True)
class _Broken:
    """A link to resolve once the records around it were seen: record ``entry`` does not follow ``before``."""

    position: int
    entry: Entry
    before: Entry


class _ChainVerifier:
    """Walks one chain in sequence order (see the module docstring)."""

    def __init__(
        self,
        chain: str,
        checkpoints: dict[int, Checkpoint],
        removed: list[tuple[int, int, str]],
        retention: StreamRetention | None = None,
    ) -> None:
        self._retention = retention
        self.report = ChainReport(chain)
        self._checkpoints = checkpoints
        self._removed = removed
        self._removed_end = {run[1]: run[2] for run in removed}
        self._previous: Entry | None = None
        self._candidates: list[Entry] = []  # records claiming the previous sequence number
        self._recent: OrderedDict[str, int] = OrderedDict()  # hash -> seq
        self._broken: deque[_Broken] = deque()
        self._moved: set[int] = set()  # seqs of records found reordered (bounded)
        self._position = 0

    def add(self, entry: Entry) -> None:
        report = self.report
        report.records += 1
        self._position += 1
        if report.records == 1:
            report.first_seq, report.first_ms = entry.seq, entry.unix_ms
        report.first_ms = min(report.first_ms, entry.unix_ms) if entry.unix_ms else report.first_ms
        report.last_ms = max(report.last_ms, entry.unix_ms)
        previous = self._previous
        if previous is not None and entry.seq == previous.seq:
            self._candidates.append(entry)
            return
        self._settle_candidates(entry)
        previous = self._previous
        last_seq = previous.seq if previous is not None else 0
        expected_prev: str | None = previous.hash if previous is not None else GENESIS
        if entry.seq > last_seq + 1:
            expected_prev = self._gap(last_seq + 1, entry.seq - 1)
        intact = entry.intact
        if not intact:
            report.add(
                Finding(
                    "modified",
                    entry.seq,
                    entry.seq,
                    entry.event_id,
                    entry.where,
                    "its content does not give its hash",
                )
            )
        elif expected_prev is not None and entry.prev != expected_prev and previous is not None:
            self._broken.append(_Broken(self._position, entry, previous))
        elif expected_prev is not None and entry.prev != expected_prev:
            report.add(
                Finding(
                    "inserted",
                    entry.seq,
                    entry.seq,
                    entry.event_id,
                    entry.where,
                    "the chain's first record does not start from the beginning",
                )
            )
        else:
            report.verified += 1
        self._check_checkpoint(entry)
        self._remember(entry)
        self._previous = entry
        report.last_seq = entry.seq
        while self._broken and self._broken[0].position < self._position - _WINDOW // 2:
            self._resolve(self._broken.popleft())

    def _settle_candidates(self, following: Entry | None) -> None:
        """Several records claimed one sequence number: keep the one the next record follows."""
        if not self._candidates or self._previous is None:
            self._candidates.clear()
            return
        claimants = [self._previous, *self._candidates]
        self._candidates = []
        keep = next(
            (c for c in claimants if following is not None and c.hash == following.prev and c.intact),
            next((c for c in claimants if c.intact), claimants[0]),
        )
        for claimant in claimants:
            if claimant is not keep:
                self.report.add(
                    Finding(
                        "inserted",
                        claimant.seq,
                        claimant.seq,
                        claimant.event_id,
                        claimant.where,
                        "a second record with this sequence number",
                    )
                )
        self._previous = keep

    def _retained(self, last: int) -> tuple[int, str, str]:
        """How much of the chain's missing start, seq 1..``last``, ISM removed: (up to which seq,
        why, why not the rest). See ``StreamRetention``."""
        rules = self._retention
        if rules is None:
            return 0, "", ""
        if not rules.gone:
            return 0, "", "no backing index of the stream is gone: they were deleted from one still there"
        if rules.unarchived:
            return (
                0,
                "",
                (
                    f"backing index {', '.join(rules.unarchived)} is gone and not in a snapshot "
                    f"of {rules.repository}, where the tier archives before it deletes"
                ),
            )
        ordered = sorted(self._checkpoints.values(), key=lambda cp: cp.last_seq)
        kept, why_not = last, ""
        if rules.oldest_created_ms is not None:
            written_after = [cp for cp in ordered if cp.created_ms > rules.oldest_created_ms + CLOCK_SLACK_MS]
            if written_after and written_after[0].last_seq < kept:
                # records linked after that checkpoint was made went to an index that is still there
                kept = written_after[0].last_seq
                why_not = f"written after {rules.oldest_index} was created, which is still there"
        old = [cp.last_seq for cp in ordered if cp.created_ms <= rules.horizon_ms]
        if not old or old[-1] < kept:
            kept = old[-1] if old else 0
            why_not = f"no checkpoint older than the tier's delete age ({rules.delete_age}) covers them"
        archived = f", archived in {rules.repository}" if rules.repository else ""
        why = f"ISM deleted {', '.join(rules.gone)} after {rules.delete_age}{archived}"
        return kept, why, why_not

    def _gap(self, first: int, last: int) -> str | None:
        """Account for seq ``first``..``last`` (absent); the hash the next record should follow, if known."""
        if self._previous is None and first == 1 and self._retention is not None:
            self._account_start(last, "missing")
            return None
        seq = first
        for run_first, run_last, _ in self._removed:
            if run_last < seq or run_first > last:
                continue
            if run_first > seq:
                self.report.add(Finding("missing", seq, run_first - 1))
            covered_to = min(run_last, last)
            self.report.removed_by_retention += covered_to - max(run_first, seq) + 1
            seq = covered_to + 1
            if seq > last:
                break
        if seq <= last:
            self.report.add(Finding("missing", seq, last))
            return None
        return self._removed_end.get(last)

    def _account_start(self, last: int, otherwise: str) -> None:
        """The chain's start, seq 1..``last``, is gone: retention as far as ISM explains it,
        the rest ``otherwise``."""
        kept, why, why_not = self._retained(last)
        if kept:
            self.report.removed_by_retention += kept
            self.report.add(Finding("retention", 1, kept, detail=why))
        if kept < last:
            self.report.add(Finding(otherwise, kept + 1, last, detail=why_not))

    def _check_checkpoint(self, entry: Entry) -> None:
        checkpoint = self._checkpoints.get(entry.seq)
        if checkpoint is None:
            return
        self.report.checkpoints += 1
        if checkpoint.last_hash != entry.hash:
            self.report.add(
                Finding(
                    "rewritten",
                    checkpoint.first_seq,
                    checkpoint.last_seq,
                    entry.event_id,
                    entry.where,
                    f"the record at seq {entry.seq} is not the one the checkpoint signed",
                )
            )

    def _remember(self, entry: Entry) -> None:
        self._recent[entry.hash] = entry.seq
        if len(self._recent) > _WINDOW:
            self._recent.popitem(last=False)

    def _resolve(self, broken: _Broken) -> None:
        entry = broken.entry
        elsewhere = self._recent.get(entry.prev)
        if elsewhere is not None and elsewhere in self._moved and broken.before.seq in self._moved:
            # in place: it follows a moved record, and a moved record sits before it
            self.report.verified += 1
        elif elsewhere is not None and elsewhere != entry.seq - 1:
            if len(self._moved) < MAX_LISTED:
                self._moved.add(entry.seq)
            self.report.add(
                Finding(
                    "reordered",
                    entry.seq,
                    entry.seq,
                    entry.event_id,
                    entry.where,
                    f"it was written after the record now at seq {elsewhere}",
                )
            )
        else:
            before = broken.before
            self.report.add(
                Finding(
                    "modified",
                    before.seq,
                    before.seq,
                    before.event_id,
                    before.where,
                    f"the record at seq {entry.seq} was written after another one (this hash was recomputed)",
                )
            )

    def finish(self) -> ChainReport:
        self._settle_candidates(None)
        while self._broken:
            self._resolve(self._broken.popleft())
        last = self.report.last_seq
        beyond = [cp for seq, cp in self._checkpoints.items() if seq > last]
        if beyond:
            top = max(beyond, key=lambda cp: cp.last_seq)
            if self._covered(last + 1, top.last_seq):
                self.report.removed_by_retention += top.last_seq - last
            elif last == 0 and self._retention is not None:  # every record is gone
                self._account_start(top.last_seq, "truncated")
            else:
                self.report.add(
                    Finding(
                        "truncated",
                        last + 1,
                        top.last_seq,
                        detail=f"the chain ends at seq {last}; a checkpoint covers up to seq {top.last_seq}",
                    )
                )
        return self.report

    def _covered(self, first: int, last: int) -> bool:
        seq = first
        for run_first, run_last, _ in self._removed:
            if run_first <= seq <= run_last:
                seq = run_last + 1
        return seq > last


def verify_chains(
    entries: Iterable[Entry],
    *,
    stored_checkpoints: Iterable[Checkpoint | str] = (),
    anchored_checkpoints: Iterable[Checkpoint | str] = (),
    keys: KeyRing | None = None,
    progress: Callable[[int], None] | None = None,
    retention: Mapping[str, StreamRetention] | None = None,
) -> VerifyReport:
    """Verify ``entries``: grouped by chain, each chain in sequence order, unchained ones last.

    ``keys`` checks the checkpoints' signatures (None: they are used unchecked, and the
    report says so). ``progress`` is called with the number of records read so far,
    every 10,000. ``retention`` maps a data stream (a checkpoint's ``index``) to what its
    retention policy may have removed (``StreamRetention``: OpenSearch, where ISM deletes
    whole indices and no library code runs).
    """
    checkpoints = _Checkpoints(stored_checkpoints, anchored_checkpoints, keys)
    report = VerifyReport(signatures_checked=keys is not None, anchored=checkpoints.anchored)
    report.checkpoint_problems.extend(checkpoints.problems)
    current: _ChainVerifier | None = None
    seen_chains: set[str] = set()
    earliest_ms: int | None = None
    read = 0
    for entry in entries:
        read += 1
        if progress is not None and read % 10_000 == 0:
            progress(read)
        if entry.chain is None:
            if earliest_ms is not None and entry.unix_ms >= earliest_ms:
                report.inserted_count += 1
                if len(report.inserted) < MAX_LISTED:
                    report.inserted.append(
                        Finding("inserted", 0, 0, entry.event_id, entry.where, "it has no place in any chain")
                    )
            else:
                report.unchained_old += 1
            continue
        if current is None or current.report.chain != entry.chain:
            if current is not None:
                report.chains.append(current.finish())
            seen_chains.add(entry.chain)
            current = _ChainVerifier(
                entry.chain,
                checkpoints.by_chain.get(entry.chain, {}),
                checkpoints.removed.get(entry.chain, []),
                _retention_of(retention, checkpoints.by_chain.get(entry.chain, {})),
            )
        current.add(entry)
        if entry.unix_ms and (earliest_ms is None or entry.unix_ms < earliest_ms):
            earliest_ms = entry.unix_ms
    if current is not None:
        report.chains.append(current.finish())
    for chain in sorted(set(checkpoints.by_chain) - seen_chains):
        # every record of a checkpointed chain is gone: truncated, unless retention removed them
        empty = _ChainVerifier(
            chain,
            checkpoints.by_chain[chain],
            checkpoints.removed.get(chain, []),
            _retention_of(retention, checkpoints.by_chain[chain]),
        )
        report.chains.append(empty.finish())
    if progress is not None:
        progress(read)
    return report


def _retention_of(
    retention: Mapping[str, StreamRetention] | None, checkpoints: Mapping[int, Checkpoint]
) -> StreamRetention | None:
    """What retention may have removed from a chain: that of the data stream its checkpoints name."""
    if not retention:
        return None
    streams = sorted({cp.index for cp in checkpoints.values() if cp.index is not None})
    known = [retention[stream] for stream in streams if stream in retention]
    return min(known, key=lambda rules: rules.horizon_ms) if known else None
