"""What a backend returns: every layer's spikes for a batch of samples (time-major, zero-delay time), and the
voltage of a non-spiking readout layer (``ir.Readout``)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Record:
    """Every layer's spikes for a batch of samples, as a backend returns them.

    ``backend``: its name ("reference", "lava", "torch"); ``layer_names``: the layers in order; ``spikes``:
    per layer uint8 [T, N, n] (time-major, zero-delay time); ``info``: timings (``"seconds"``) and backend
    details; ``voltages``: {layer name: int32 [T, N, n]} the voltage v (internal units) of each readout layer
    (``ir.Readout``; its spikes are all 0).

    Example:
        >>> import qsnn_lava as ql, numpy as np
        >>> out = np.array([[[1, 0], [0, 1]], [[1, 0], [1, 1]]], np.uint8)  # [T = 2, N = 2, n = 2]
        >>> rec = ql.Record("reference", ["out"], [out])
        >>> rec.samples, rec.predictions().tolist(), rec.accuracy([0, 1])
        (2, [0, 1], 1.0)
    """

    backend: str
    layer_names: list
    spikes: list  # per layer: uint8 [T, N, n]
    info: dict = field(default_factory=dict)  # timings and backend details
    voltages: dict = field(default_factory=dict)  # readout layer name -> int32 [T, N, n]

    @property
    def samples(self) -> int:
        """Number of samples N (axis 1 of the output layer's spikes)."""
        return self.spikes[-1].shape[1]

    @property
    def output(self) -> np.ndarray:
        """What the network outputs, [T, N, n_out]: the output layer's voltage (int32) when it is a readout, else
        its spikes (uint8)."""
        return self.voltages.get(self.layer_names[-1], self.spikes[-1])

    def predictions(self) -> np.ndarray:
        """Class = most output spikes, or for a readout output layer the largest voltage summed over the T steps;
        ties go to the lowest index (numpy argmax rule)."""
        return np.argmax(self.output.sum(axis=0, dtype=np.int64), axis=-1)

    def accuracy(self, labels: np.ndarray) -> float:
        """Fraction of samples whose prediction equals its label; ``labels`` [>= N] (only the first N are used)."""
        return float(np.mean(self.predictions() == np.asarray(labels)[: self.samples]))
