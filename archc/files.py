"""Writing output files: whole or not at all, and never over something that is not a file.

What `-o FILE` does, by what FILE is (docs/language.md, section 15):
- a regular file, or no file yet: a temporary file beside it is written and
  renamed over it, so a reader sees the old file or the whole new one;
- a symbolic link: the same, at the file the link points to; the link stays;
- a device, a FIFO or another file that is not regular (/dev/null,
  /dev/full, a named pipe): written through, as a shell's `>` writes, and
  never replaced by a regular file; a failed write (`/dev/full`: no space
  left on device) is an OSError;
- a directory: an OSError.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
from pathlib import Path


def write_output(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` as the module docstring describes; OSError when it cannot."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = os.fspath(path)
    try:
        st = os.stat(path)  # through links: what the name finally is
    except FileNotFoundError:
        st = None  # a new file, or a link to one that does not exist yet
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if st is None or stat.S_ISREG(st.st_mode):
        target = os.path.realpath(path)  # the file itself, so the rename keeps every link to it
        if st is None or _same_file(st, target):
            _replace(target, data, stat.S_IMODE(st.st_mode) if st else None)
            return
    _write_through(path, data)


def _same_file(st: os.stat_result, path: str) -> bool:
    """Whether `path` is the file `st` describes (a /proc/self/fd link names no path of its file)."""
    try:
        return os.path.samestat(st, os.stat(path))
    except OSError:
        return False


def _write_through(path: str, data: bytes) -> None:
    """Open what is there for writing (never create or replace it) and write: a device, a FIFO's reader."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _replace(path: str, data: bytes, mode: int | None) -> None:
    """Write a temporary file beside `path`, then rename it over `path`.

    The file keeps the permissions of the file it replaces; a new one gets the
    usual ones (0666 less the umask), not the private ones of a temporary
    file. SIGINT and SIGTERM wait until the rename is done: writing a regular
    file does not block, and so an interrupt leaves either the old file or the
    whole new one, and never a temporary file.
    """
    with _signals_deferred():
        fd, tmp = tempfile.mkstemp(prefix=".archc-", suffix=".tmp", dir=os.path.dirname(path) or ".")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            if mode is None:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back in this block; they are delivered, and act, when it ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signals to hold
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
