"""The dead-letter file: one fsynced JSON line per rejected document, with the reason."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_middleware.errors import AuditError
from audit_middleware.sinks.opensearch.deadletter import DeadLetterFile

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@pytest.fixture
def dead_letters(tmp_path: Path) -> Iterator[DeadLetterFile]:
    dead = DeadLetterFile(tmp_path / "state" / "dead-letter.jsonl")
    yield dead
    dead.close()


def test_json_document_is_embedded_as_an_object(dead_letters: DeadLetterFile) -> None:
    """A JSON document is stored as JSON, beside the reason, status and a UTC millisecond timestamp."""
    document = b'{"event": {"id": "0190-a"}, "user": {"name": "ana"}}'
    dead_letters.write(document, reason="mapper_parsing_exception: failed to parse [user]", status=400)
    (line,) = dead_letters.path.read_bytes().splitlines()
    entry = json.loads(line)
    assert entry["document"] == json.loads(document)
    assert entry["reason"] == "mapper_parsing_exception: failed to parse [user]"
    assert entry["status"] == 400
    assert TIMESTAMP.fullmatch(entry["@timestamp"])
    assert dead_letters.written == 1


def test_non_json_document_is_kept_as_text(dead_letters: DeadLetterFile) -> None:
    """A document that is not JSON is kept as raw text; invalid UTF-8 survives as escapes."""
    dead_letters.write(b"not json {", reason="unparseable", status=None)
    dead_letters.write(b'{"a": "\xff"}', reason="bad utf-8", status=413)
    entries = list(dead_letters.read())
    assert [e["document"] for e in entries] == ["not json {", '{"a": "\\xff"}']
    assert [e["status"] for e in entries] == [None, 413]
    assert dead_letters.written == 2


def test_each_write_is_one_fsynced_line(
    dead_letters: DeadLetterFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write ends with an fsync, so a dead-lettered record survives a crash."""
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    for n in range(3):
        dead_letters.write(b"{}", reason=f"r{n}", status=400)
    assert len(synced) == 3
    assert dead_letters.path.read_bytes().count(b"\n") == 3


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    """Threads and two open files appending at once produce only whole, valid lines."""
    path = tmp_path / "dead-letter.jsonl"
    files = [DeadLetterFile(path), DeadLetterFile(path)]
    payload = json.dumps({"blob": "z" * 5000}).encode()

    def writer(dead: DeadLetterFile, worker: int) -> None:
        for n in range(25):
            dead.write(payload, reason=f"{worker}-{n}", status=400)

    threads = [threading.Thread(target=writer, args=(files[w % 2], w)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 100
    assert sorted(json.loads(line)["reason"] for line in lines) == sorted(
        f"{w}-{n}" for w in range(4) for n in range(25)
    )
    assert [f.written for f in files] == [50, 50]
    for dead in files:
        dead.close()


def test_read_skips_a_torn_last_line(dead_letters: DeadLetterFile) -> None:
    """read() yields whole lines and ignores a line cut short by a crash."""
    dead_letters.write(b'{"n": 1}', reason="first", status=400)
    with dead_letters.path.open("ab") as stream:
        stream.write(b'{"@timestamp": "2024-01-0')
    assert [e["reason"] for e in dead_letters.read()] == ["first"]


def test_read_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    """read() yields nothing when the file was removed (e.g. rotated away by an operator)."""
    dead = DeadLetterFile(tmp_path / "dead-letter.jsonl")
    dead.path.unlink()
    assert list(dead.read()) == []
    dead.close()


def test_write_after_close_raises(dead_letters: DeadLetterFile) -> None:
    """A closed dead-letter file refuses writes instead of losing them silently."""
    dead_letters.close()
    with pytest.raises(AuditError):
        dead_letters.write(b"{}", reason="late", status=400)
    assert dead_letters.written == 0
