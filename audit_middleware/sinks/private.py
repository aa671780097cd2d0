"""Private places on disk for records at rest: directories 0700, files 0600.

Spooled, dead-lettered and last-resort records hold emails, IP addresses and resource
names, so only the user the app runs as may read them. Directories this library creates
are made ``0700`` (every level it creates, not only the last); a directory that already
existed is left as it is, except a last-resort directory, which must be private (see
:func:`private_directory`). Files are created ``0600``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

__all__ = ["DIRECTORY_MODE", "FILE_MODE", "private_directory", "writable_directory"]

DIRECTORY_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def private_directory(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` and any missing parents with mode 0700; return it.

    ``tighten`` also makes an existing ``path`` 0700 when it is ours and open to others
    (for directories only this library writes in). Raises ``OSError`` when it cannot.
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode is reduced by the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    if tighten:
        info = path.lstat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, DIRECTORY_MODE)
    return path


def writable_directory(path: Path) -> Path:
    """``private_directory(path)``, then prove a file can be created in it; raise ``OSError`` if not."""
    private_directory(path)
    probe = path / f".probe-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.write(fd, b"\n")
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
    return path
