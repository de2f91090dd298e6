"""Importing Lava in the process that runs it (the Lava worker, or a test inside the Lava environment).

Lava lives in its own Python 3.10 environment; the core never imports it and reaches it through
``qsnn_lava.deployment.lava_worker``. This module is the one place that imports Lava's runtime and the one
place that says how to get Lava (``LAVA_SETUP_HINT``).
"""
from __future__ import annotations

import sys

from qsnn_lava.errors import QsnnError

LAVA_SETUP_HINT = ("Lava is not available: it runs in its own Python 3.10 environment; create it with `make lava` "
                   "in a qsnn-lava checkout, or set QSNN_LAVA_PYTHON to a Python 3.10 with lava-nc 0.10.0 and "
                   "qsnn-lava installed")


def lava_importable() -> bool:
    """Whether this interpreter can import lava-nc, found without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec("lava.magma") is not None
    except ImportError:  # no 'lava' namespace at all
        return False


def import_lava() -> None:
    """Import Lava's runtime, which calls ``multiprocessing.set_start_method('fork')`` without force.

    That raises when anything (tqdm's lock, for one) already fixed the start method. When the
    method in force is already 'fork' Lava's wish is met, so the import is repeated with the call
    forced; any other method is a real conflict and is reported.
    """
    import multiprocessing as mp

    if not lava_importable():
        raise QsnnError(f"{sys.executable} cannot import lava-nc. {LAVA_SETUP_HINT}")
    try:
        import lava.magma.runtime.runtime  # noqa: F401
    except RuntimeError:
        if mp.get_start_method() != "fork":
            raise QsnnError(f"Lava needs the 'fork' multiprocessing start method, but "
                            f"'{mp.get_start_method()}' is already set in this process") from None
        original = mp.set_start_method
        mp.set_start_method = lambda method, force=False: original(method, force=True)
        try:
            import lava.magma.runtime.runtime  # noqa: F401,F811
        finally:
            mp.set_start_method = original
