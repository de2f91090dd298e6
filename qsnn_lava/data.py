"""Datasets and the spike encoding every backend shares.

digits: scikit-learn's 1,797 8x8 handwritten digits (values 0..16), embedded, no download. Fixed
stratified split: 20 % test (360 samples), ``random_state = 0``.

fashion-mnist: the real 60,000 / 10,000 28x28 images (values 0..255), read from the idx files the
Debian package ``dataset-fashion-mnist`` installs in /usr/share/datasets/fashion-mnist (or a folder
given as ``data_dir`` / ``$QSNN_FASHION_DIR``). Official split.

Event data (qsnn_lava.events reads the files; nothing is downloaded): each sample's events are binned
into T count frames [T, 2, H, W] over its own duration, downsampled by summing k x k blocks, and fed as
spikes where a count is > 0, flattened to [T, 2*H*W] (channel, row, column order). ``denoise`` applies
qsnn_lava.events.denoise_events first (use the same setting for training and verification). Binning is
lazy: a split's files are listed (and labelled) at once, but read and binned only when its spikes are
used, and ``encoded(split, T, samples=n)`` bins only the first n (evaluating 100 test samples reads 100
files, not the training split).
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

Encoding ("direct", graded input, ``input_bits`` = b in 2..8): every step carries the pixel itself,
quantised to b bits, ``q = floor((x * (2^b - 1) * 2 + L) / (2 L))`` (round half up, integers only), the
same q at all T steps. Loihi 2 sends q as a graded spike's payload (``num_message_bits = b``) and the
first synapse computes ``a = W @ q`` (docs/integer-semantics.md). A network records its input's message
bits (``ir.Network.input_bits``): 1 means 0/1 spikes (the rate code, or event data), b > 1 the direct code.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import QsnnError, about
from .ir import INPUT_BITS_RANGE

# Event datasets: (sensor (W, H), downsample factor, classes); frames are binarised (count > 0 -> spike).
EVENT_DATASETS = {"synthetic-saccades": (None, 1, 10), "nmnist": ((34, 34), 2, 10),
                  "ncaltech101": ((240, 180), 8, 101), "dvsgesture": ((128, 128), 4, 11),
                  "cifar10dvs": ((128, 128), 4, 10)}
DATASETS = ("digits", "fashion-mnist", *EVENT_DATASETS)
FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist


class Split:
    """Intensities [N, n_in] in 0..levels (rate-coded on use), or, with ``levels = None``, spikes that are
    already binned in time [N, T, n_in] (event data).

    An event split made by ``Split.lazy`` knows its labels ``y`` at once and bins its samples only when
    they are used: ``head(n)`` bins the first n, ``x`` all of them (each at most once).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, levels: int | None):
        self._x, self.y, self.levels = x, np.asarray(y), levels
        self._bin_first: Callable[[int], np.ndarray] | None = None

    @classmethod
    def lazy(cls, y, bin_first: Callable[[int], np.ndarray]) -> "Split":
        """An event split whose spikes ``bin_first(n)`` -> [n, T, n_in] bins on first use."""
        split = cls(None, y, None)
        split._bin_first = bin_first
        return split

    @property
    def x(self) -> np.ndarray:
        """All samples' inputs: intensities [N, n_in] in 0..levels, or spikes [N, T, n_in] for event
        data (binned now if they were not yet)."""
        return self.head(len(self.y))

    def head(self, n: int) -> np.ndarray:
        """The first ``n`` samples' inputs (binned now if they were not yet)."""
        if self._x is None or len(self._x) < n:
            self._x = self._bin_first(n)
        return self._x[:n]


@dataclass
class Dataset:
    """A dataset by name: ``train`` and ``test`` Splits, ``n_in`` inputs per sample (flat), ``n_classes`` classes,
    and ``shape``, one sample's input as (C, H, W) for conv networks (() when it has no image layout)."""

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
    """Fashion-MNIST from its four idx .gz files in ``data_dir`` (else ``$QSNN_FASHION_DIR``, else
    ``FASHION_DIR``).

    Returns the official split (60,000 train, 10,000 test) as intensities [N, 784] in 0..255 (``levels = 255``),
    10 classes, ``shape = (1, 28, 28)``. QsnnError when a file is missing, truncated or not an idx file."""
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


BIN_CHUNK = 32  # samples per task of a parallel binning


def bin_samples(samples, n: int, sensor, timesteps: int, downsample: int, denoise: bool = False,
                progress: str | None = None, workers: int = 1) -> np.ndarray:
    """The first ``n`` (events, label) pairs of ``samples`` -> spikes [n, T, n_in] (uint8) of binarised
    count frames. An event outside the sensor is refused naming its file (``samples.files``, when the
    samples have them). ``progress``: the tqdm bar's label, or None for no bar.

    ``workers`` > 1: where every sample is one file (``samples.read_one``), the files are read and binned
    by that many worker processes in chunks of ``BIN_CHUNK`` samples, assembled in order: the same array.
    The workers are ended on return, on an error (the first, naming its file) and on Ctrl-C or SIGTERM."""
    from .events import events_to_frames

    files = getattr(samples, "files", None) or [None] * n
    w, h = (int(s) for s in sensor)
    out = np.zeros((n, timesteps, 2 * -(-h // downsample) * -(-w // downsample)), np.uint8)
    bar = None
    if progress is not None:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=progress, unit="sample", leave=False)
    try:
        if workers > 1 and getattr(samples, "read_one", None) is not None and n > BIN_CHUNK:
            _bin_parallel(out, samples.read_one, files[:n], (sensor, timesteps, downsample, denoise), workers, bar)
            return out
        for i, ((events, _), path) in enumerate(zip(islice(samples, n), files)):
            with about(path) if path is not None else contextlib.nullcontext():
                f = events_to_frames(events, sensor, timesteps, downsample=downsample, denoise=denoise)
            out[i] = (f > 0).reshape(timesteps, -1)
            if bar is not None:
                bar.update(1)
        return out
    finally:
        if bar is not None:
            bar.close()


def _bin_files(read_one, paths, how) -> np.ndarray:
    """One worker's task in ``bin_samples``: read and bin the files ``paths`` -> [len(paths), T, n_in]."""
    from .events import events_to_frames

    sensor, timesteps, downsample, denoise = how
    frames = []
    for path in paths:
        with about(path):
            f = events_to_frames(read_one(path), sensor, timesteps, downsample=downsample, denoise=denoise)
        frames.append((f > 0).reshape(timesteps, -1).astype(np.uint8))
    return np.stack(frames)


def _worker_signals() -> None:
    """A binning worker: Ctrl-C is the parent's to handle (it ends the pool), SIGTERM ends the worker; the
    mask the parent held while starting it is lifted."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _bin_parallel(out: np.ndarray, read_one, paths: list, how: tuple, workers: int, bar) -> None:
    """Fill ``out`` with the binned ``paths`` using a pool of ``workers`` fresh (spawned) processes."""
    import multiprocessing as mp

    from .errors import signals_deferred

    chunks = [(lo, paths[lo:lo + BIN_CHUNK]) for lo in range(0, len(paths), BIN_CHUNK)]
    with signals_deferred():  # a Ctrl-C cannot leave the pool half-started
        pool = mp.get_context("spawn").Pool(min(workers, len(chunks)), initializer=_worker_signals)
    try:
        pending = [(lo, pool.apply_async(_bin_files, (read_one, chunk, how))) for lo, chunk in chunks]
        for lo, res in pending:
            block = res.get()
            out[lo:lo + len(block)] = block
            if bar is not None:
                bar.update(len(block))
    finally:
        with signals_deferred():
            pool.terminate()  # the workers are ended whatever happened (an error, Ctrl-C, SIGTERM)
            pool.join()


def frames_split(samples, sensor, timesteps: int, downsample: int, denoise: bool = False,
                 progress: str | None = None, workers: int = 1) -> Split:
    """``events.Samples`` (or a list of (events, label) pairs) -> a spike Split [N, T, n_in] of binarised
    count frames, binned lazily (see ``Split.lazy``) by ``workers`` processes (``bin_samples``)."""
    labels = samples.labels if hasattr(samples, "labels") else [label for _, label in samples]
    if not labels:
        raise QsnnError("the event dataset has no samples in this split")
    return Split.lazy(np.asarray(labels, np.int64),
                      lambda n: bin_samples(samples, n, sensor, timesteps, downsample, denoise, progress, workers))


def load_events(name: str, data_dir, timesteps: int, denoise: bool = False, progress: bool = False,
                workers: int = 1) -> Dataset:
    """An event dataset whose splits are listed now and binned when used (see ``Split.lazy``), by
    ``workers`` processes where each sample is a file of its own (``bin_samples``)."""
    from . import events as ev

    sensor, k, n_classes = EVENT_DATASETS[name]
    if name == "synthetic-saccades":
        digits = load_dataset("digits")
        splits = {}
        for part, split in (("train", digits.train), ("test", digits.test)):
            streams, sensor = ev.synthetic_saccades(split.x.reshape(-1, 8, 8), split.levels, timesteps, seed=0)
            splits[part] = frames_split(list(zip(streams, split.y)), sensor, timesteps, k, denoise)
    else:
        if data_dir is None:
            raise QsnnError(f"dataset '{name}' is read from local files: pass --data-dir (see docs/events.md)")
        readers = {"nmnist": ev.nmnist_samples, "ncaltech101": ev.ncaltech101_samples,
                   "dvsgesture": ev.dvsgesture_samples, "cifar10dvs": ev.cifar10dvs_samples}
        if name == "dvsgesture" and not (Path(data_dir) / "trials_to_train.txt").exists():
            readers["dvsgesture"] = ev.dvsgesture_npy_samples  # the common .npy copy
        splits = {part: frames_split(readers[name](data_dir, part), sensor, timesteps, k, denoise,
                                     f"{name} {part}" if progress else None, workers)
                  for part in ("train", "test")}
    w, h = sensor  # (W, H), frames are (2, ceil(H / k), ceil(W / k))
    shape = (2, -(-h // k), -(-w // k))
    return Dataset(name, splits["train"], splits["test"], n_in=int(np.prod(shape)), n_classes=n_classes,
                   shape=shape)


def load_dataset(name: str, data_dir=None, timesteps: int = 8, denoise: bool = False,
                 progress: bool = False, workers: int = 1) -> Dataset:
    """A dataset by name; event datasets are binned into ``timesteps`` frames (optionally denoised) when
    their samples are used, with a progress bar if ``progress``, by ``workers`` processes (``bin_samples``;
    the images are in memory already and ignore it)."""
    if name in EVENT_DATASETS:
        return load_events(name, data_dir, timesteps, denoise, progress, workers)
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


def direct_encode(x: np.ndarray, levels: int, timesteps: int, bits: int) -> np.ndarray:
    """Direct (graded) input: integer intensities [N, n] in 0..levels -> the same ``bits``-bit value at every
    step, [T, N, n] uint8, ``q = (x * (2^bits - 1) * 2 + levels) // (2 * levels)`` (round half up)."""
    x = np.asarray(x, dtype=np.int64)
    if x.size and (x.min() < 0 or x.max() > levels):
        raise QsnnError(f"input intensities must lie in [0, {levels}], found [{x.min()}, {x.max()}]")
    if not 2 <= bits <= INPUT_BITS_RANGE[1]:
        raise QsnnError(f"input_bits = {bits}: direct input takes 2 to {INPUT_BITS_RANGE[1]} bits (1 bit is the "
                        "0/1 spike input; use the rate code)")
    q = ((x * ((1 << bits) - 1) * 2 + levels) // (2 * levels)).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(q, (timesteps,) + q.shape))


def encode_intensities(x: np.ndarray, levels: int, timesteps: int, input_bits: int = 1) -> np.ndarray:
    """Intensities [N, n] in 0..levels -> the network input [T, N, n] uint8: the rate code for
    ``input_bits`` = 1, the direct code (``direct_encode``) for 2..8."""
    return rate_encode(x, levels, timesteps) if input_bits == 1 else direct_encode(x, levels, timesteps, input_bits)


def encoded(split: Split, timesteps: int, samples: int | None = None,
            input_bits: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` of a split as (input [T, N, n_in], labels [N]): 0/1 spikes of the rate code
    (``input_bits`` = 1; event data are binned already), or the direct code at ``input_bits`` = 2..8 bits."""
    n = len(split.y) if samples is None else int(samples)
    if n < 1 or n > len(split.y):
        raise QsnnError(f"samples = {samples} must be in [1, {len(split.y)}]")
    if split.levels is None and input_bits != 1:
        raise QsnnError(f"direct input (input_bits = {input_bits}) needs intensities; event data are spikes "
                        "already (use the rate input, input_bits = 1)")
    if split.levels is None:  # event data, binned already
        x = split.head(n)
        if x.shape[1] != timesteps:
            raise QsnnError(f"the event data are binned into {x.shape[1]} time steps but the network "
                            f"runs {timesteps}; load the dataset with timesteps = {timesteps}")
        return np.ascontiguousarray(np.transpose(x, (1, 0, 2))).astype(np.uint8), split.y[:n]
    return encode_intensities(split.head(n), split.levels, timesteps, input_bits), split.y[:n]


def check_spike_array(x, what: str, input_bits: int = 1) -> np.ndarray:
    """``x`` as a uint8 array when it is a plain numeric array of 0s and 1s (of whole numbers in
    [0, 2^input_bits - 1] for a direct-input network); otherwise a QsnnError naming ``what`` (e.g.
    "'in.npy'"): structured, object, string and complex arrays, NaN and any other value are refused.
    Shapes are the caller's to check.

    Example:
        >>> check_spike_array(np.array([[0.0, 1.0]]), "'x.npy'").dtype
        dtype('uint8')
        >>> check_spike_array(np.zeros(2, [("x", "u2"), ("t", "i8")]), "'x.npy'")
        Traceback (most recent call last):
        ...
        qsnn_lava.errors.QsnnError: 'x.npy' holds structured values [('x', '<u2'), ('t', '<i8')]; input spikes must be a plain numeric array of 0s and 1s (numpy.save of a 0/1 array)
    """
    x = np.asarray(x)
    if x.dtype.fields is not None or x.dtype.kind not in "biuf":
        kind = f"structured values {x.dtype.descr}" if x.dtype.fields is not None else f"{x.dtype} values"
        kind = kind if len(kind) <= 80 else kind[:77] + "..."
        raise QsnnError(f"{what} holds {kind}; input spikes must be a plain numeric array of 0s and 1s "
                        "(numpy.save of a 0/1 array)")
    if input_bits > 1:
        top = (1 << input_bits) - 1
        bad = ~((x >= 0) & (x <= top) & (np.mod(x, 1) == 0)) if x.size else np.zeros(0, bool)
        if bad.any():
            raise QsnnError(f"{what} must hold whole numbers in [0, {top}] (the network's {input_bits}-bit direct "
                            f"input), found {x[bad].flat[0]!r}; encode the input with input_bits = {input_bits}")
        return x.astype(np.uint8)
    if x.size and not np.isin(x, (0, 1)).all():
        bad = x[~np.isin(x, (0, 1))].flat[0]
        raise QsnnError(f"{what} must hold binary spikes (0/1), found {bad!r}; threshold or binarise the input")
    return x.astype(np.uint8)
