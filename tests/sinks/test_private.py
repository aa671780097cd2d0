"""Private directories for records at rest."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from audit_middleware.sinks.private import private_directory, writable_directory


def test_every_created_level_is_private(tmp_path: Path) -> None:
    """Each directory level created is 0700, whatever the umask."""
    private_directory(tmp_path / "a" / "b" / "c")
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_existing_directories_are_left_unless_tightened(tmp_path: Path) -> None:
    """An existing directory keeps its mode; tighten=True makes ours private."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    private_directory(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    private_directory(shared, tighten=True)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700


def test_a_path_under_a_file_is_refused(tmp_path: Path) -> None:
    """A directory under a regular file raises OSError (the caller decides what to do)."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match=r"[Nn]ot a directory"):
        writable_directory(tmp_path / "file" / "state")
