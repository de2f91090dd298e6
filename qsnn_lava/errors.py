"""The exception types for problems a user can cause and fix, and for being asked to stop.

Everything else that goes wrong is a bug and may raise whatever it raises. The CLI turns a
`QsnnError` into a single line on stderr and exit code 2, and `Terminated` (SIGTERM) into exit 143.
"""
from __future__ import annotations

import contextlib
import signal


class QsnnError(Exception):
    """Bad input: the message names the file, layer or field, and says how to fix it.

    Example:
        >>> import qsnn_lava as ql
        >>> try:
        ...     ql.Dense([[0.5, 1]])
        ... except ql.QsnnError as e:
        ...     print(e)
        dense weight must hold integers (mantissas), found fractional values
    """


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM). A BaseException, like KeyboardInterrupt, so that only
    clean-up code (``finally``) sees it on the way out."""


@contextlib.contextmanager
def about(path):
    """Prefix any QsnnError raised inside the block with the file it concerns: ``'path': message``.

    Example:
        >>> from qsnn_lava.errors import about, QsnnError
        >>> try:
        ...     with about("m.pt"):
        ...         raise QsnnError("layer 0: vth = -1 is outside [0, 131071]")
        ... except QsnnError as e:
        ...     print(e)
        'm.pt': layer 0: vth = -1 is outside [0, 131071]
    """
    try:
        yield
    except QsnnError as e:
        if str(e).startswith(f"'{path}'"):
            raise
        raise QsnnError(f"'{path}': {e}") from None


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM back while child processes are started or stopped, so a Ctrl-C cannot leave one
    half-started or unreaped; they are delivered when the block ends."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def proc_stat(pid) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, pgrp, ...: field 3 onwards of
    proc(5), so index 19 is the start time), or None when the process is gone (or there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
