"""The JSON-lines sink: one whole line per record, to a private file or a caller's stream."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from audit_middleware import configure
from audit_middleware.sinks import JsonLinesSink, base
from audit_middleware.sinks.delivery import PIPELINE
from tests.conftest import ROOT
from tests.query.conftest import make_event
from tests.wsgi_support import request, simple_app

# Each child process appends records of about 20 kB (more than a pipe's atomic write size),
# so interleaved writes would show as broken lines.
APPENDER = """
import sys
from audit_middleware.sinks import JsonLinesSink
from tests.query.conftest import make_event

sink = JsonLinesSink(sys.argv[1])
sys.stdin.readline()  # start together
for n in range(int(sys.argv[2])):
    sink.emit(make_event("create", ago_ms=n, details={"writer": sys.argv[3], "padding": "x" * 20_000}))
sink.close()
"""


def lines(path: Path) -> list[dict[str, object]]:
    """The file's records; fails on any line that is not a whole JSON document."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.splitlines()]


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """File descriptors passed to os.fsync."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


@pytest.mark.parametrize(
    "arguments", [{}, {"path": "x.jsonl", "stream": io.StringIO()}], ids=["neither", "both"]
)
def test_exactly_one_of_path_or_stream(arguments: dict[str, object], tmp_path: Path) -> None:
    """Neither or both of path and stream is a ValueError."""
    if "path" in arguments:
        arguments["path"] = tmp_path / "x.jsonl"
    with pytest.raises(ValueError, match="exactly one of path or stream"):
        JsonLinesSink(**arguments)  # type: ignore[arg-type]


def test_the_file_is_private_and_its_directory_made(tmp_path: Path) -> None:
    """A new file is created with mode 0600 (records hold personal data), parents included."""
    path = tmp_path / "logs" / "deep" / "audit.jsonl"
    old_umask = os.umask(0)  # the mode given at creation, not narrowed by the umask
    try:
        sink = JsonLinesSink(path)
    finally:
        os.umask(old_umask)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sink.path == path
    finally:
        sink.close()


def test_each_record_is_one_line_of_its_document(tmp_path: Path) -> None:
    """emit() appends the event's stored document as one JSON line."""
    path = tmp_path / "audit.jsonl"
    events = [make_event("create"), make_event("delete", details={"text": "two\nlines"})]
    with_sink = JsonLinesSink(path)
    for event in events:
        with_sink.emit(event)
    with_sink.close()
    assert lines(path) == [event.to_document() for event in events]


def test_an_existing_file_is_appended_to(tmp_path: Path) -> None:
    """A second sink on the same file (a restart) keeps what was there."""
    path = tmp_path / "audit.jsonl"
    for action in ("create", "delete"):
        sink = JsonLinesSink(path)
        sink.emit(make_event(action))
        sink.close()
    assert [line["event"]["action"] for line in lines(path)] == ["create", "delete"]  # type: ignore[index]


def test_many_threads_write_whole_lines(tmp_path: Path) -> None:
    """Eight threads emitting at once give one intact line per record."""
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesSink(path)
    start = threading.Barrier(8)

    def emit_many(writer: int) -> None:
        start.wait(5)
        for n in range(100):
            sink.emit(make_event("create", ago_ms=n, details={"writer": writer, "padding": "y" * 5000}))

    threads = [threading.Thread(target=emit_many, args=(writer,)) for writer in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    sink.close()
    records = lines(path)
    assert len(records) == 800
    assert len({record["event"]["id"] for record in records}) == 800  # type: ignore[index]


def test_two_processes_append_to_one_file(tmp_path: Path) -> None:
    """Two processes sharing the file (like two workers) never interleave inside a line."""
    path = tmp_path / "shared.jsonl"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), "200", name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
    assert [child.wait(60) for child in children] == [0, 0]
    records = lines(path)
    writers = [record["audit"]["details"]["writer"] for record in records]  # type: ignore[index]
    assert sorted(writers) == ["a"] * 200 + ["b"] * 200


def test_fsync_option_syncs_every_record(tmp_path: Path, fsynced: list[int]) -> None:
    """With fsync=True each emit() is fsynced before it returns; without, emit() leaves it to flush()."""
    durable = JsonLinesSink(tmp_path / "durable.jsonl", fsync=True)
    plain = JsonLinesSink(tmp_path / "plain.jsonl")
    try:
        for _ in range(3):
            durable.emit(make_event("create"))
        assert len(fsynced) == 3
        plain.emit(make_event("create"))
        assert len(fsynced) == 3
        assert plain.flush() is True
        assert len(fsynced) == 4
    finally:
        durable.close()
        plain.close()


def test_a_stream_gets_the_same_lines_and_stays_open(fsynced: list[int]) -> None:
    """A caller's stream receives the lines, is flushed by flush(), and is left open by close()."""

    class Stream(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    stream = Stream()
    sink = JsonLinesSink(stream=stream)
    event = make_event("create")
    sink.emit(event)
    assert sink.path is None
    assert sink.flush() is True
    assert stream.flushes == 1
    sink.close()
    assert not stream.closed
    assert [json.loads(line) for line in stream.getvalue().splitlines()] == [event.to_document()]
    assert fsynced == [], "a stream is not a file descriptor to fsync"


def test_close_closes_the_file(tmp_path: Path) -> None:
    """close() releases the descriptor, and a second close() is harmless."""
    sink = JsonLinesSink(tmp_path / "audit.jsonl")
    assert sink._fd is not None
    sink.close()
    assert sink._fd is None
    sink.close()


def test_a_record_after_close_is_still_appended(tmp_path: Path, fsynced: list[int]) -> None:
    """A late emit() (another thread, after shutdown) reopens the file for that line rather than drop it."""
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesSink(path, fsync=True)
    early, late = make_event("create"), make_event("delete")
    sink.emit(early)
    sink.close()
    synced = len(fsynced)
    sink.emit(late)
    assert [line["event"]["id"] for line in lines(path)] == [early.id, late.id]  # type: ignore[index]
    assert len(fsynced) == synced + 1, "the late line is fsynced too"
    assert sink._fd is None, "the sink stays closed"


def test_stdout_writes_to_the_current_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    """JsonLinesSink.stdout() writes each record as a line on sys.stdout."""
    event = make_event("create")
    JsonLinesSink.stdout().emit(event)
    assert json.loads(capsys.readouterr().out) == event.to_document()


# -- the delivery worker's batches: one write a batch ----------------------------------


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every os.write."""
    sizes: list[int] = []
    real = os.write

    def counting(fd: int, data: bytes) -> int:
        sizes.append(len(data))
        return real(fd, data)

    monkeypatch.setattr(os, "write", counting)
    return sizes


def test_a_delivery_batch_is_written_in_one_write(tmp_path: Path, writes: list[int]) -> None:
    """Records emitted inside a delivery batch are held and written at its end, in order, in one
    write; outside a batch each record is written at once."""
    sink = JsonLinesSink(tmp_path / "audit.jsonl")
    events = [make_event("create", ago_ms=n) for n in range(5)]
    base.begin_batch()
    for event in events:
        sink.emit(event)
    assert writes == []
    assert base.end_batch() == []
    assert len(writes) == 1
    late = make_event("delete")
    sink.emit(late)
    assert len(writes) == 2
    sink.close()
    assert [line["event"]["id"] for line in lines(tmp_path / "audit.jsonl")] == [  # type: ignore[index]
        event.id for event in [*events, late]
    ]


def test_a_flush_inside_a_batch_writes_what_it_holds(tmp_path: Path) -> None:
    """flush() from the delivery worker itself, mid-batch, leaves nothing held."""
    sink = JsonLinesSink(tmp_path / "audit.jsonl")
    base.begin_batch()
    try:
        sink.emit(make_event("create"))
        sink.flush()
        assert len(lines(tmp_path / "audit.jsonl")) == 1
    finally:
        assert base.end_batch() == []
    sink.close()
    assert len(lines(tmp_path / "audit.jsonl")) == 1


def test_a_batch_that_cannot_be_written_is_handed_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write at the batch's end names every held record, for the last resort."""
    sink = JsonLinesSink(tmp_path / "audit.jsonl")
    events = [make_event("create", ago_ms=n) for n in range(3)]
    base.begin_batch()
    for event in events:
        sink.emit(event)

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    [(unwritten, error)] = base.end_batch()
    assert unwritten == events
    assert isinstance(error, OSError)
    monkeypatch.undo()
    sink.close()
    assert not (tmp_path / "audit.jsonl").read_bytes()


def test_the_pipeline_hands_an_unwritten_batch_to_the_last_resort(
    tmp_path: Path, fallback_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the delivery worker a batch the disk refused ends in the private last-resort file."""
    sink = JsonLinesSink(tmp_path / "audit.jsonl")
    configure(sink=sink)

    def full(fd: int, lines: bytes) -> None:
        raise OSError(28, "disk full")

    monkeypatch.setattr(sink, "_append", full)
    for n in range(3):
        request(simple_app(), "POST", f"/pods/p-{n}")
    PIPELINE.flush(10)
    files = (fallback_dir / "other").glob("*.jsonl")
    kept = [line for path in files for line in path.read_text().splitlines()]
    assert len(kept) == 3
    assert all("disk full" in line for line in kept)
