"""Atomic writes: a file is written to a temporary file beside it and renamed into place.

Every file the library writes (volumes, checkpoints, resumable states, run records, twins,
JSON) goes through here: the temporary file is unique to the call (``mkstemp``), gets the mode
the final file should have (an existing file's own, else ``0666`` less the umask), and is
renamed over the target only when the write succeeded. A write the system refuses (a full
disk, a file-size limit) is one :class:`WriteError` line naming the file, and the old file is
left as it was.

Examples
--------
>>> import os, tempfile
>>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
>>> atomic_write(target, lambda tmp: open(tmp, "w").write("done"))
>>> open(target).read()
'done'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .._validate import InputError

__all__ = ["WriteError", "atomic_write", "temp_beside", "write_failure"]


class WriteError(InputError):
    """A file could not be written (disk full, no permission, ...); the message names it."""


def temp_beside(path: str | os.PathLike) -> Path:
    """An empty temporary file in ``path``'s folder (made if missing), unique to this call.

    Its mode is what the renamed file should have: an existing ``path``'s own mode, else
    ``0666`` less the process umask (``mkstemp`` makes ``0600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.close(fd)
        if path.is_file():
            mode = path.stat().st_mode & 0o7777
        else:
            mask = os.umask(0)
            os.umask(mask)
            mode = 0o666 & ~mask
        os.chmod(tmp, mode)
    except BaseException:  # a failure or an interruption (Ctrl-C, SIGTERM) here leaves no file
        os.unlink(tmp)
        raise
    return Path(tmp)


def write_failure(spec: str | os.PathLike, err: OSError) -> str:
    """The one-line message of a write the system refused (disk full, file too large, ...).

    Examples
    --------
    >>> import errno
    >>> write_failure("m.pt", OSError(errno.ENOSPC, "No space left on device"))
    'm.pt: could not be written (No space left on device); any file already there is unchanged'
    """
    reason = err.strerror if err.strerror else f"disk full or file size limit: {err}"
    return f"{os.fspath(spec)}: could not be written ({reason}); any file already there is unchanged"


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    If ``write`` fails or is interrupted (any exception, ``KeyboardInterrupt`` and
    :class:`~emseg_tutorial.interrupt.Interrupted` included), ``path`` is left as it was and
    the temporary file is removed; a failure of the system (``OSError``, or the
    ``RuntimeError`` ``torch.save`` turns it into) is a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        tmp = temp_beside(path)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise WriteError(write_failure(path, err)) from None
    except RuntimeError as err:  # torch.save reports a failed write as a RuntimeError
        if "writ" not in str(err).lower():
            raise
        raise WriteError(write_failure(path, OSError(str(err).splitlines()[0]))) from None
    finally:  # any exit: an error, Ctrl-C or SIGTERM (Interrupted) included
        if tmp is not None and tmp.exists():
            tmp.unlink()
