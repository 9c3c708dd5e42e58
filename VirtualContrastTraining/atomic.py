"""Write files and folders so that a killed process never leaves a half-written one.

Everything is written to a temporary name in the destination folder, then
renamed (atomic on POSIX within one file system). A full disk (or a file
size limit) is a one-line InputError naming the file, and the temporary
file goes: the previous version, if any, stays as it was.

A folder that one process at a time may write (a training run) is guarded
by `folder_lock`: an OS lock on a lock file that holds the writer's pid. The
OS drops the lock when its process dies, so the lock of a killed run is
taken over without any staleness guess.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from VirtualContrastTraining.errors import InputError

try:
    import fcntl
except ImportError:  # Windows: msvcrt's byte-range lock instead
    fcntl = None
    import msvcrt

LOCK_NAME = ".lock"
# A write that fails for want of space: no space left, file size limit (RLIMIT_FSIZE), disk quota.
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` (and parents) and check we can write there; InputError otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(path, f"cannot create output folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(path, "output folder is not writable")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` if the block succeeds.

    The temporary name keeps `dest`'s suffixes, so writers that pick a format by
    extension (SimpleITK, matplotlib) still work.
    """
    dest = Path(dest)
    ensure_writable_dir(dest.parent)
    suffix = "".join(dest.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name.split('.')[0]}-", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        raise InputError(dest, f"cannot write: {exc.strerror} (disk full?); nothing was half-written, "
                         "the previous version, if any, is unchanged") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(dest: str | os.PathLike, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `dest`; it replaces `dest` only if the block succeeds."""
    dest = Path(dest)
    ensure_writable_dir(dest.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _try_lock(fd: int) -> bool:
    """An exclusive, non-blocking OS lock on the open file `fd`; False when another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(path.read_text(encoding='ascii'))}"
    return "pid unknown"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold FOLDER/.lock exclusively for the block; InputError naming the folder when another process holds it.

    The lock file is removed on exit. A process that opened it just before has a lock on a file no longer
    in the folder, so each taker checks that the file it locked is still the one there, and else tries again.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        if not _try_lock(fd):
            os.close(fd)
            raise InputError(folder, f"another {what} is writing this folder ({_holder(path)}); "
                             "wait for it to end, or choose another folder")
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        yield
    finally:
        with contextlib.suppress(OSError):  # Windows cannot remove an open file: a stale lock file stays, unlocked
            path.unlink()
        os.close(fd)
