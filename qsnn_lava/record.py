"""What a backend returns: every layer's spikes for a batch of samples (time-major, zero-delay time)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Record:
    backend: str
    layer_names: list
    spikes: list  # per layer: uint8 [T, N, n]
    info: dict = field(default_factory=dict)  # timings and backend details

    @property
    def samples(self) -> int:
        return self.spikes[-1].shape[1]

    def predictions(self) -> np.ndarray:
        """Class = most output spikes; ties go to the lowest index (numpy argmax rule)."""
        return np.argmax(self.spikes[-1].sum(axis=0, dtype=np.int64), axis=-1)

    def accuracy(self, labels: np.ndarray) -> float:
        return float(np.mean(self.predictions() == np.asarray(labels)[: self.samples]))
