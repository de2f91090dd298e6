"""Datasets and the spike encoding every backend shares.

digits: scikit-learn's 1,797 8x8 handwritten digits (values 0..16), embedded, no download. Fixed
stratified split: 20 % test (360 samples), ``random_state = 0``.

fashion-mnist: the real 60,000 / 10,000 28x28 images (values 0..255), read from the idx files the
Debian package ``dataset-fashion-mnist`` installs in /usr/share/datasets/fashion-mnist (or a folder
given as ``data_dir`` / ``$QSNN_FASHION_DIR``). Official split.

Event data (qsnn_lava.events reads the files; nothing is downloaded): each sample's events are binned
into T count frames [T, 2, H, W] over its own duration, downsampled by summing k x k blocks, and fed as
spikes where a count is > 0, flattened to [T, 2*H*W] (channel, row, column order). ``denoise`` applies
qsnn_lava.events.denoise_events first (use the same setting for training and verification).
  nmnist       data_dir with Train/ and Test/ (<digit>/*.bin); 34x34 sensor, k = 2 -> 578 inputs
  ncaltech101  data_dir with Caltech101/<class>/*.bin; 240x180 frame, k = 8 -> 1380 inputs; split:
               qsnn_lava.events.ncaltech101_split (deterministic 80/20 per class)
  dvsgesture   data_dir of IBM's release (trials_to_*.txt, *.aedat, *_labels.csv), or of the common .npy
               copy (userXX_<lighting>/<class>.npy; users 1-23 train, 24-29 test); 128x128, k = 4 -> 2048
  cifar10dvs   data_dir/<class>/*.aedat in AEDAT 3.1 (the original AEDAT 2.0 is refused); 128x128, k = 4;
               deterministic 9:1 split per class
  synthetic-saccades  SYNTHETIC: the digits split turned into N-MNIST-style events by simulated saccades
               (qsnn_lava.events.synthetic_saccades, seed 0); 12x12 sensor, k = 1 -> 288 inputs

Encoding ("rate-if"): a deterministic integrate-and-fire rate code on the integer pixel values. For
pixel x in 0..L (L = 16 for digits) an accumulator starts at L // 2 and each step adds x; a spike is
emitted and L subtracted whenever the accumulator reaches L. So a pixel fires about ``T * x / L``
times, identically on every backend and run. Arrays are time-major: [T, N, n_in], uint8.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import QsnnError

# Event datasets: (sensor (W, H), downsample factor, classes); frames are binarised (count > 0 -> spike).
EVENT_DATASETS = {"synthetic-saccades": (None, 1, 10), "nmnist": ((34, 34), 2, 10),
                  "ncaltech101": ((240, 180), 8, 101), "dvsgesture": ((128, 128), 4, 11),
                  "cifar10dvs": ((128, 128), 4, 10)}
DATASETS = ("digits", "fashion-mnist", *EVENT_DATASETS)
FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist


@dataclass
class Split:
    """Intensities [N, n_in] in 0..levels (rate-coded on use), or, with ``levels = None``, spikes that are
    already binned in time [N, T, n_in] (event data)."""

    x: np.ndarray
    y: np.ndarray  # labels [N]
    levels: int | None


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    n_in: int
    n_classes: int
    shape: tuple = ()  # one sample's input as (C, H, W) for conv networks; () when it has no image layout


def read_idx(path) -> np.ndarray:
    """An idx file (optionally gzipped): big-endian magic (0, 0, dtype 0x08 = uint8, ndim), dims, data."""
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise QsnnError(f"cannot read '{path}' ({e.__class__.__name__}: {e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise QsnnError(f"'{path}' is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise QsnnError(f"'{path}' is truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def load_fashion_mnist(data_dir=None) -> Dataset:
    import os

    root = Path(data_dir or os.environ.get("QSNN_FASHION_DIR") or FASHION_DIR)
    files = {k: root / f"{k}-ubyte.gz" for k in ("train-images-idx3", "train-labels-idx1",
                                                 "t10k-images-idx3", "t10k-labels-idx1")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise QsnnError(f"Fashion-MNIST not found ({missing[0]} missing); install it with "
                        "`apt-get install dataset-fashion-mnist` or point --data-dir at the idx .gz files")
    arr = {k: read_idx(p) for k, p in files.items()}
    split = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        x = arr[f"{prefix}-images-idx3"].reshape(-1, 784).astype(np.int64)
        y = arr[f"{prefix}-labels-idx1"].astype(np.int64)
        if len(x) != len(y):
            raise QsnnError(f"Fashion-MNIST {part}: {len(x)} images but {len(y)} labels")
        split[part] = Split(x, y, 255)
    return Dataset("fashion-mnist", split["train"], split["test"], n_in=784, n_classes=10, shape=(1, 28, 28))


def frames_split(samples, sensor, timesteps: int, downsample: int, denoise: bool = False) -> Split:
    """(events, label) pairs -> a spike Split [N, T, n_in] of binarised count frames."""
    from .events import events_to_frames

    xs, ys = [], []
    for events, label in samples:
        f = events_to_frames(events, sensor, timesteps, downsample=downsample, denoise=denoise)
        xs.append((f > 0).reshape(timesteps, -1))
        ys.append(label)
    if not xs:
        raise QsnnError("the event dataset has no samples in this split")
    return Split(np.stack(xs).astype(np.uint8), np.asarray(ys, np.int64), None)


def load_events(name: str, data_dir, timesteps: int, denoise: bool = False) -> Dataset:
    from . import events as ev

    sensor, k, n_classes = EVENT_DATASETS[name]
    if name == "synthetic-saccades":
        digits = load_dataset("digits")
        splits = {}
        for part, split in (("train", digits.train), ("test", digits.test)):
            streams, sensor = ev.synthetic_saccades(split.x.reshape(-1, 8, 8), split.levels, timesteps, seed=0)
            splits[part] = frames_split(zip(streams, split.y), sensor, timesteps, k, denoise)
    else:
        if data_dir is None:
            raise QsnnError(f"dataset '{name}' is read from local files: pass --data-dir (see docs/events.md)")
        readers = {"nmnist": ev.nmnist_samples, "ncaltech101": ev.ncaltech101_samples,
                   "dvsgesture": ev.dvsgesture_samples, "cifar10dvs": ev.cifar10dvs_samples}
        if name == "dvsgesture" and not (Path(data_dir) / "trials_to_train.txt").exists():
            readers["dvsgesture"] = ev.dvsgesture_npy_samples  # the common .npy copy
        splits = {part: frames_split(readers[name](data_dir, part), sensor, timesteps, k, denoise)
                  for part in ("train", "test")}
    w, h = sensor  # (W, H), frames are (2, ceil(H / k), ceil(W / k))
    return Dataset(name, splits["train"], splits["test"], n_in=splits["test"].x.shape[2], n_classes=n_classes,
                   shape=(2, -(-h // k), -(-w // k)))


def load_dataset(name: str, data_dir=None, timesteps: int = 8, denoise: bool = False) -> Dataset:
    """A dataset by name; event datasets are binned into ``timesteps`` frames (optionally denoised)."""
    if name in EVENT_DATASETS:
        return load_events(name, data_dir, timesteps, denoise)
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        x = d.data.astype(np.int64)
        xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=0, stratify=d.target)
        return Dataset("digits", Split(xtr, ytr.astype(np.int64), 16), Split(xte, yte.astype(np.int64), 16),
                       n_in=64, n_classes=10, shape=(1, 8, 8))
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir)
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
    if split.levels is None:  # event data, binned already
        if split.x.shape[1] != timesteps:
            raise QsnnError(f"the event data are binned into {split.x.shape[1]} time steps but the network "
                            f"runs {timesteps}; load the dataset with timesteps = {timesteps}")
        return np.ascontiguousarray(np.transpose(split.x[:n], (1, 0, 2))).astype(np.uint8), split.y[:n]
    return rate_encode(split.x[:n], split.levels, timesteps), split.y[:n]
