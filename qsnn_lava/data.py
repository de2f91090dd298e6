"""Datasets and the spike encoding every backend shares.

digits: scikit-learn's 1,797 8x8 handwritten digits (values 0..16), embedded, no download. Fixed
stratified split: 20 % test (360 samples), ``random_state = 0``.

Encoding ("rate-if"): a deterministic integrate-and-fire rate code on the integer pixel values. For
pixel x in 0..L (L = 16 for digits) an accumulator starts at L // 2 and each step adds x; a spike is
emitted and L subtracted whenever the accumulator reaches L. So a pixel fires about ``T * x / L``
times, identically on every backend and run. Arrays are time-major: [T, N, n_in], uint8.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import QsnnError

DATASETS = ("digits",)


@dataclass
class Split:
    x: np.ndarray  # integer intensities [N, n_in]
    y: np.ndarray  # labels [N]
    levels: int  # full-scale intensity L


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    n_in: int
    n_classes: int


def load_dataset(name: str) -> Dataset:
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        x = d.data.astype(np.int64)
        xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=0, stratify=d.target)
        return Dataset("digits", Split(xtr, ytr.astype(np.int64), 16), Split(xte, yte.astype(np.int64), 16),
                       n_in=64, n_classes=10)
    raise QsnnError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")


def rate_encode(x: np.ndarray, levels: int, timesteps: int) -> np.ndarray:
    """Deterministic IF rate code: integer intensities [N, n] in 0..levels -> spikes [T, N, n] (uint8)."""
    x = np.asarray(x, dtype=np.int64)
    if x.size and (x.min() < 0 or x.max() > levels):
        raise QsnnError(f"input intensities must lie in [0, {levels}], found [{x.min()}, {x.max()}]")
    acc = np.full(x.shape, levels // 2, dtype=np.int64)
    out = np.zeros((timesteps,) + x.shape, dtype=np.uint8)
    for t in range(timesteps):
        acc += x
        fired = acc >= levels
        acc -= fired * levels
        out[t] = fired
    return out


def encoded(split: Split, timesteps: int, samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` of a split as (spikes [T, N, n_in], labels [N])."""
    n = len(split.y) if samples is None else int(samples)
    if n < 1 or n > len(split.y):
        raise QsnnError(f"samples = {samples} must be in [1, {len(split.y)}]")
    return rate_encode(split.x[:n], split.levels, timesteps), split.y[:n]
