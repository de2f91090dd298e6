"""Backends by name; each is ``run(net, spikes [T, N, n_in], progress=False, device=None, workers=None) -> Record``.

``reference`` runs in this process, on ``device`` (a torch device; default the CPU), its sample shards on
``workers`` threads (None: torch's thread count); ``lava`` in supervised Lava worker processes
(``backends.lava``), ``workers`` of them on contiguous sample shards (None: one), always on the CPU (Lava's
bit-accurate models), whatever ``device``. The spikes do not depend on ``workers``."""
from __future__ import annotations

from qsnn_lava.errors import QsnnError


def _reference(net, spikes, progress=False, device=None, workers=None):
    from qsnn_lava.reference import simulate

    return simulate(net, spikes, progress=progress, device=device, workers=workers)


def _lava(net, spikes, progress=False, device=None, workers=None):
    from .lava import run

    return run(net, spikes, progress=progress, workers=workers or 1)


BACKENDS = {"reference": _reference, "lava": _lava}


def get_backend(name: str):
    """The backend function ``run(net, spikes [T, N, n_in], progress=False, device=None, workers=None) -> Record``
    registered as
    ``name``; QsnnError listing the known names otherwise."""
    if name not in BACKENDS:
        raise QsnnError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]
