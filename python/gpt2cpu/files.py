"""Opening the files of a model directory without hanging or reading without end.

A FIFO in place of a file would block `open` (or `read`) forever, a device such as
/dev/zero would be read until memory runs out, and a directory or a symbolic link loop
gives an OSError that names no format. Each is reported as "not a regular file" with the
caller's error type; a regular file is size-checked before it is read.
"""

from __future__ import annotations

import errno
import os
import stat

PathLike = str | os.PathLike[str]


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _not_regular(path: PathLike, detail: str, error: type[Exception]) -> Exception:
    return error(f"{os.fspath(path)}: not a regular file ({detail})")


def is_present_file(path: PathLike, error: type[Exception]) -> bool:
    """True for a regular file, False when nothing is there; raises `error` for anything
    else in its place (a directory, a FIFO, a symbolic link loop, a dangling link: a Hugging
    Face cache snapshot whose blob is missing, which must not pass for an absent file and
    make a loader fall back to another)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise error(f"{os.fspath(path)}: a symbolic link to {os.readlink(path)}, which "
                        "does not exist") from None
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_regular(path, "a symbolic link loop", error) from None
        raise error(f"{os.fspath(path)}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(path, _kind(mode), error)
    return True


def open_regular(path: PathLike, error: type[Exception], max_bytes: int | None = None,
                 what: str = "this file") -> tuple[int, int]:
    """(fd, size) of a regular file opened for reading; the caller closes fd. Raises
    FileNotFoundError when nothing is there, `error` for anything but a regular file or
    one over max_bytes."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(path)}: file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_regular(path, "a symbolic link loop", error) from None
        if exc.errno == errno.EISDIR:
            raise _not_regular(path, "a directory", error) from None
        raise error(f"{os.fspath(path)}: cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, _kind(info.st_mode), error)
        if max_bytes is not None and info.st_size > max_bytes:
            raise error(
                f"{os.fspath(path)}: {info.st_size} bytes is too large for {what} "
                f"(at most {max_bytes})"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_regular(path: PathLike, error: type[Exception], max_bytes: int,
                 what: str = "this file") -> bytes:
    """The bytes of a regular file of at most max_bytes (see open_regular)."""
    fd, _ = open_regular(path, error, max_bytes, what)
    with os.fdopen(fd, "rb") as file:
        # Bounded even if the file grows after the size check.
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{os.fspath(path)}: more than {max_bytes} bytes is too large for {what}")
    return data
