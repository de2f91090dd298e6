"""Neuromorphic event data from local files (never downloaded), binned into count frames.

An event stream is a numpy structured array with dtype ``EVENT_DTYPE``: fields ``x`` (uint16, column),
``y`` (uint16, row), ``p`` (uint8, polarity: 1 = ON / brightness increase, 0 = OFF) and ``t`` (int64,
microseconds), sorted by ``t`` (stable, so events with equal timestamps keep their file order).

Readers (pure numpy, whole-file ``np.frombuffer`` decoding):

- ``read_nmnist_bin``: N-MNIST / N-Caltech101 ``.bin`` files (5 bytes per event).
- ``read_aedat31``: AEDAT 3.1 files (DVS128 Gesture, the original IBM release).
- ``read_dvsgesture_npy``: the common preprocessed DVS128 Gesture copy (``.npy``, x y p t, t in ms).

Folder layouts: ``nmnist_samples`` (``Train/<digit>/*.bin``, ``Test/<digit>/*.bin``),
``ncaltech101_samples`` (``Caltech101/<class>/*.bin`` with the deterministic ``ncaltech101_split``,
since no official split exists) and ``dvsgesture_samples`` (``trials_to_{train,test}.txt`` +
``userXX_<lighting>.aedat`` + ``userXX_<lighting>_labels.csv``). Each checks the layout when called
(errors come at once, not on first iteration) and returns ``Samples``: the ``(events, label)`` pairs,
read lazily one file at a time, whose labels and files are known before any event is read.

Preprocessing: ``events_to_frames`` (count frames [T, 2, H, W] over T equal time bins, polarity as
channel, optional integer downsampling and ``denoise_events``, a neighbourhood support filter).

Synthetic data: ``synthetic_saccades`` turns intensity images into SYNTHETIC N-MNIST-style event
streams (three saccades, log-intensity change threshold). It is a stand-in for benchmarks, not a
recording; label it synthetic wherever it is used.

Every problem a user's file or folder can cause raises ``QsnnError`` naming the file and the problem.

CIFAR10-DVS: the readers used with the original CIFAR10-DVS release (spikingjelly, tonic, jackd's
events-tfds) decode AEDAT 2.0 (big-endian, jAER header) rather than AEDAT 3.1, so ``read_aedat31``
refuses those files with a message naming the version instead of misreading them.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import QsnnError

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("p", "u1"), ("t", "<i8")])

NMNIST_SENSOR = (34, 34)          # (W, H)
DVSGESTURE_SENSOR = (128, 128)    # (W, H)
DVSGESTURE_CLASSES = 11

# N-MNIST / N-Caltech101 timestamp-overflow marker (see read_nmnist_bin).
NMNIST_OVERFLOW_Y = 240
NMNIST_OVERFLOW_INCREMENT_US = 2 ** 13

# AEDAT 3.1 (iniVation docs "AEDAT 3.1"; libcaer include/libcaer/events/common.h and polarity.h).
AEDAT31_END_HEADER = b"#!END-HEADER"
AEDAT_PACKET_HEADER = np.dtype([
    ("eventType", "<i2"), ("eventSource", "<i2"), ("eventSize", "<i4"), ("eventTSOffset", "<i4"),
    ("eventTSOverflow", "<i4"), ("eventCapacity", "<i4"), ("eventNumber", "<i4"), ("eventValid", "<i4"),
])  # 28 bytes, little-endian
AEDAT_POLARITY_EVENT = 1
AEDAT_POLARITY_DTYPE = np.dtype([("data", "<u4"), ("timestamp", "<i4")])  # 8 bytes
AEDAT_TS_OVERFLOW_SHIFT = 31
AEDAT_ADDR_MASK = 0x7FFF  # libcaer POLARITY_{X,Y}_ADDR_MASK (15 bit); same values as 0x1FFF for 128x128

DEFAULT_DENOISE_US = 5000


# ---------------------------------------------------------------------------------------------------
# Event arrays
# ---------------------------------------------------------------------------------------------------

def make_events(x, y, p, t) -> np.ndarray:
    """Build an ``EVENT_DTYPE`` array from equal-length sequences, stably sorted by ``t``."""
    x, y, p, t = (np.asarray(a).reshape(-1) for a in (x, y, p, t))
    if not (len(x) == len(y) == len(p) == len(t)):
        raise QsnnError(f"event fields differ in length: x {len(x)}, y {len(y)}, p {len(p)}, t {len(t)}")
    for name, a, hi in (("x", x, 0xFFFF), ("y", y, 0xFFFF), ("p", p, 1)):
        if len(a) and (np.min(a) < 0 or np.max(a) > hi):
            raise QsnnError(f"event {name} must lie in [0, {hi}], found [{np.min(a)}, {np.max(a)}]")
    ev = np.empty(len(t), EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, p, t
    return _sorted_by_t(ev)


def _sorted_by_t(ev: np.ndarray) -> np.ndarray:
    if len(ev) > 1 and np.any(np.diff(ev["t"]) < 0):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise QsnnError(f"cannot read '{path}' ({e.__class__.__name__}: {e})") from None


class Samples:
    """The ``(events, label)`` pairs of one split, in order, read lazily: iterating reads one file at a
    time (again on every new iteration), so taking the first n samples reads only their files.

    ``labels[i]`` and ``files[i]`` (the file sample i is read from; several gesture segments share one
    recording) are known without reading any events; ``len()`` is the number of samples. ``read_one``: where
    each sample is one whole file, the function reading it (lets ``data.bin_samples`` read in parallel).
    """

    def __init__(self, labels, files, read_events: Callable[[], Iterator[np.ndarray]],
                 read_one: Callable[[Path], np.ndarray] | None = None):
        self.labels, self.files, self._read_events = list(labels), list(files), read_events
        self.read_one = read_one  # set when each sample is one whole file: ``read_one(files[i])`` reads sample i

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        return zip(self._read_events(), self.labels)


# ---------------------------------------------------------------------------------------------------
# N-MNIST / N-Caltech101 .bin
# ---------------------------------------------------------------------------------------------------

def read_nmnist_bin(path, overflow_increment: int = NMNIST_OVERFLOW_INCREMENT_US) -> np.ndarray:
    """Events of one N-MNIST or N-Caltech101 ``.bin`` file.

    Format (Orchard et al. 2015, garrickorchard.com/datasets; ``Read_Ndataset.m``): 5 bytes per event,
    b0 = x, b1 = y, bit 7 of b2 = polarity (1 = ON), timestamp in microseconds =
    (b2 & 0x7F) << 16 | b3 << 8 | b4 (23 bits). A file whose size is not a multiple of 5 is truncated.

    Timestamp overflow, exactly as Garrick Orchard's Python reader ``read_dataset`` in
    gorchard/event-Python ``eventvision.py`` (copied unchanged into tonic ``tonic.io.read_mnist_file``):
    every record with y == 240 (x, polarity and timestamp ignored) is an overflow marker, not an event;
    ``2**13`` us is added to the timestamps of that record and of every record after it, and the markers
    are dropped. That increment is what the reference code adds (``time_increment = 2 ** 13``), although
    the 23-bit counter itself would wrap at 2**23 us; pass ``overflow_increment=2**23`` to use the wrap
    value instead. y = 240 lies outside both sensors (34x34, <= ~240x180), so no real event is lost;
    released samples last ~300 ms, far below 2**23 us, so the choice matters only for files that
    actually carry markers.
    """
    raw = _read_bytes(path)
    if not raw:
        raise QsnnError(f"'{path}' is empty (0 bytes); an N-MNIST / N-Caltech101 recording holds 5-byte "
                        "events: copy the file again from the dataset")
    if len(raw) % 5:
        raise QsnnError(f"'{path}' is truncated: {len(raw)} bytes is not a multiple of 5 "
                        "(N-MNIST / N-Caltech101 .bin files hold 5-byte events)")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    p = rec[:, 2] >> 7
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    marker = y == NMNIST_OVERFLOW_Y
    if marker.any():
        t = t + np.cumsum(marker) * int(overflow_increment)
        keep = ~marker
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    return make_events(x, y, p, t)


# ---------------------------------------------------------------------------------------------------
# AEDAT 3.1
# ---------------------------------------------------------------------------------------------------

def _aedat31_header_end(raw: bytes, path) -> int:
    """Offset of the first byte after the ASCII header (after the ``#!END-HEADER`` line)."""
    pos = 0
    first = True
    while True:
        if raw[pos:pos + 1] != b"#":
            where = "the file ends" if pos >= len(raw) else f"byte {pos} is not a '#' header line"
            raise QsnnError(f"'{path}' has no AEDAT 3.1 header end: {where} before the "
                            f"'{AEDAT31_END_HEADER.decode()}' line")
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise QsnnError(f"'{path}' has no AEDAT 3.1 header end: the header line at byte {pos} "
                            "never ends")
        line = raw[pos:nl].rstrip(b"\r")
        pos = nl + 1
        if first and line.startswith(b"#!AER-DAT") and line != b"#!AER-DAT3.1":
            version = line[len(b"#!AER-DAT"):].decode("ascii", "replace")
            raise QsnnError(f"'{path}' is AEDAT {version}; this reader reads AEDAT 3.1 only")
        first = False
        if line == AEDAT31_END_HEADER:
            return pos


def read_aedat31(path, valid_only: bool = False) -> np.ndarray:
    """Polarity events of an AEDAT 3.1 file (DVS128 Gesture's ``userXX_<lighting>.aedat``).

    Format (iniVation documentation "AEDAT 3.1"; libcaer ``events/common.h`` and ``events/polarity.h``),
    all integers little-endian:

    - ASCII header: lines starting with '#' and ending in CRLF, first ``#!AER-DAT3.1``, last
      ``#!END-HEADER``. (``#End Of ASCII Header`` is jAER's AEDAT 2.0 terminator, not 3.1's.)
    - Then event packets: a 28-byte header (int16 eventType, int16 eventSource, int32 eventSize,
      int32 eventTSOffset, int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber,
      int32 eventValid) followed by eventCapacity * eventSize bytes (a packet's memory layout; writers
      store full packets, so capacity == number in practice), of which the first eventNumber events
      are read.
    - Polarity events (eventType 1, eventSize 8): uint32 data, int32 timestamp (us).
      x = (data >> 17) & 0x7FFF, y = (data >> 2) & 0x7FFF, p = (data >> 1) & 1, bit 0 = valid mark.
      (libcaer's 15-bit masks; the 0x1FFF masks some readers use give the same values on a 128x128
      sensor.) Origin (0, 0) is the upper-left corner.
    - 64-bit timestamp = (eventTSOverflow << 31) | timestamp (libcaer ``TS_OVERFLOW_SHIFT = 31``,
      ``caerPolarityEventGetTimestamp64``).

    Packets of other event types (special, frame, IMU, ...) are skipped. By default events whose valid
    mark is 0 are kept, as tonic and spikingjelly do on DVS128 Gesture; ``valid_only=True`` drops them
    as libcaer's valid-event iterators do.
    """
    raw = _read_bytes(path)
    pos = _aedat31_header_end(raw, path)
    hsize = AEDAT_PACKET_HEADER.itemsize
    chunks = []
    while pos < len(raw):
        if len(raw) - pos < hsize:
            raise QsnnError(f"'{path}' is truncated: {len(raw) - pos} bytes at offset {pos} cannot hold "
                            f"a {hsize}-byte AEDAT 3.1 packet header")
        h = np.frombuffer(raw, AEDAT_PACKET_HEADER, count=1, offset=pos)[0]
        etype, size, cap, num = int(h["eventType"]), int(h["eventSize"]), int(h["eventCapacity"]), \
            int(h["eventNumber"])
        if size <= 0 or cap < 0 or num < 0 or num > cap:
            raise QsnnError(f"'{path}' has a corrupt AEDAT 3.1 packet header at offset {pos}: eventSize "
                            f"{size}, eventCapacity {cap}, eventNumber {num}")
        start = pos + hsize
        end = start + cap * size
        if end > len(raw):
            raise QsnnError(f"'{path}' is truncated: the AEDAT 3.1 packet at offset {pos} needs {cap * size} "
                            f"bytes of events ({cap} x {size}), the file has {len(raw) - start} left")
        if etype == AEDAT_POLARITY_EVENT:
            if size != AEDAT_POLARITY_DTYPE.itemsize:
                raise QsnnError(f"'{path}': polarity packet at offset {pos} has eventSize {size}; "
                                f"AEDAT 3.1 polarity events are {AEDAT_POLARITY_DTYPE.itemsize} bytes")
            ev = np.frombuffer(raw, AEDAT_POLARITY_DTYPE, count=num, offset=start)
            chunks.append((ev, int(h["eventTSOverflow"]), pos))
        pos = end
    return _decode_polarity(chunks, path, valid_only)


def _decode_polarity(chunks, path, valid_only: bool) -> np.ndarray:
    if not chunks:
        return np.empty(0, EVENT_DTYPE)
    data = np.concatenate([c[0]["data"] for c in chunks]).astype(np.int64)
    ts = np.concatenate([c[0]["timestamp"] for c in chunks]).astype(np.int64)
    if np.any(ts < 0):
        raise QsnnError(f"'{path}' has negative polarity-event timestamps; the file is corrupt")
    overflow = np.concatenate([np.full(len(c[0]), c[1], np.int64) for c in chunks])
    t = (overflow << AEDAT_TS_OVERFLOW_SHIFT) | ts
    x = (data >> 17) & AEDAT_ADDR_MASK
    y = (data >> 2) & AEDAT_ADDR_MASK
    p = (data >> 1) & 1
    if valid_only:
        keep = (data & 1) == 1
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    return make_events(x, y, p, t)


# ---------------------------------------------------------------------------------------------------
# DVS128 Gesture
# ---------------------------------------------------------------------------------------------------

def read_dvsgesture_npy(path) -> np.ndarray:
    """Events of the common preprocessed DVS128 Gesture copy (``userXX_<lighting>/<class>.npy``).

    Format (as tonic's ``DVSGesture`` reads it): a 2-D array [N, 4] with columns x, y, p, t, t in
    milliseconds (possibly fractional); t is converted to integer microseconds (``rint(t * 1000)``).
    Polarity must be 0 or 1.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise QsnnError(f"cannot read '{path}' as a .npy array ({e.__class__.__name__}: {e})") from None
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise QsnnError(f"'{path}' has shape {arr.shape}; expected [N, 4] columns x, y, p, t (t in ms)")
    x, y, p, t_ms = (arr[:, i] for i in range(4))
    if len(arr) and (np.any(x < 0) or np.any(y < 0) or not np.all(np.isin(p, (0, 1)))):
        raise QsnnError(f"'{path}': x and y must be >= 0 and polarity 0 or 1")
    t = np.rint(np.asarray(t_ms, np.float64) * 1000.0).astype(np.int64)
    return make_events(x.astype(np.int64), y.astype(np.int64), p.astype(np.int64), t)


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise QsnnError(f"split must be 'train' or 'test', got '{split}'")
    return split


def read_gesture_labels(path) -> list[tuple[int, int, int]]:
    """``userXX_<lighting>_labels.csv``: a header line, then ``class,startTime_usec,endTime_usec`` rows.

    Classes 1..11 become labels 0..10. Returns [(label, start_us, end_us)]; a segment holds the events
    with start <= t < end (the half-open window spikingjelly's DVS128 Gesture splitter uses).
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise QsnnError(f"cannot read labels '{path}' ({e.__class__.__name__}: {e})") from None
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = [s.strip() for s in line.split(",")]
        try:
            cls, start, end = (int(s) for s in parts)
        except ValueError:
            raise QsnnError(f"'{path}' line {n}: expected 'class,startTime_usec,endTime_usec', "
                            f"got '{line}'") from None
        if not 1 <= cls <= DVSGESTURE_CLASSES or end < start:
            raise QsnnError(f"'{path}' line {n}: class must be 1..{DVSGESTURE_CLASSES} and "
                            f"end >= start, got '{line}'")
        rows.append((cls - 1, start, end))
    return rows


def dvsgesture_samples(root, split: str, valid_only: bool = False) -> Samples:
    """(events, label) for every labelled segment of the DVS128 Gesture ``split`` ('train' | 'test').

    Layout (IBM's original release): ``root/trials_to_train.txt`` and ``root/trials_to_test.txt`` list
    one ``userXX_<lighting>.aedat`` per line; each sits in ``root`` with its
    ``userXX_<lighting>_labels.csv`` (see ``read_gesture_labels``). Recordings are read with
    ``read_aedat31``; segments keep absolute timestamps. The trial list, every listed file and every
    labels csv are checked when this is called; recordings are read lazily, one at a time.
    """
    root = Path(root)
    listing = root / f"trials_to_{_check_split(split)}.txt"
    if not listing.is_file():
        raise QsnnError(f"'{listing}' not found: a DVS128 Gesture folder holds trials_to_train.txt, "
                        "trials_to_test.txt and the userXX_<lighting>.aedat / _labels.csv files")
    trials = []
    for name in (s.strip() for s in listing.read_text().splitlines()):
        if not name:
            continue
        aedat = root / name
        labels = aedat.with_name(aedat.stem + "_labels.csv")
        if not aedat.is_file():
            raise QsnnError(f"'{aedat}' listed in '{listing}' not found")
        if not labels.is_file():
            raise QsnnError(f"labels '{labels}' for '{aedat}' not found")
        trials.append((aedat, read_gesture_labels(labels)))
    return Samples([label for _, rows in trials for label, _, _ in rows],
                   [aedat for aedat, rows in trials for _ in rows], lambda: _gesture_iter(trials, valid_only))


def _gesture_iter(trials, valid_only):
    for aedat, rows in trials:
        ev = read_aedat31(aedat, valid_only=valid_only)
        for label, start, end in rows:
            lo, hi = np.searchsorted(ev["t"], [start, end], side="left")
            yield ev[lo:hi]


# ---------------------------------------------------------------------------------------------------
# N-MNIST and N-Caltech101 folders
# ---------------------------------------------------------------------------------------------------

def _class_files(folder: Path, what: str, suffix: str = ".bin") -> dict[str, list[Path]]:
    classes = {d.name: sorted(d.glob(f"*{suffix}")) for d in sorted(folder.iterdir()) if d.is_dir()}
    if not any(classes.values()):
        raise QsnnError(f"'{folder}' holds no <class>/*{suffix} files; expected {what}")
    return classes


def nmnist_files(root, split: str) -> list[tuple[Path, int]]:
    """[(path, digit)] of ``root/Train/<digit>/*.bin`` or ``root/Test/<digit>/*.bin``, sorted."""
    root = Path(root)
    folder = root / {"train": "Train", "test": "Test"}[_check_split(split)]
    layout = "root/Train/<digit>/*.bin and root/Test/<digit>/*.bin"
    if not folder.is_dir():
        raise QsnnError(f"'{folder}' not found: an N-MNIST folder holds {layout}")
    out = []
    for name, files in _class_files(folder, layout).items():
        if not (len(name) == 1 and name.isdigit()):
            raise QsnnError(f"'{folder / name}' is not a digit folder 0..9; expected {layout}")
        out += [(f, int(name)) for f in files]
    return out


def _file_samples(files: list[tuple[Path, int]], read: Callable[[Path], np.ndarray]) -> Samples:
    return Samples([label for _, label in files], [f for f, _ in files], lambda: (read(f) for f, _ in files), read)


def nmnist_samples(root, split: str) -> Samples:
    """(events, digit) for each N-MNIST sample of ``split`` (34x34 sensor, ``NMNIST_SENSOR``)."""
    return _file_samples(nmnist_files(root, split), read_nmnist_bin)


def ncaltech101_files(root) -> tuple[list[tuple[Path, int]], list[str]]:
    """([(path, label)], class_names) of ``root/Caltech101/<class>/*.bin``.

    Labels index the sorted class folder names (``class_names[label]``); files are sorted by name.
    """
    folder = Path(root) / "Caltech101"
    layout = "root/Caltech101/<class>/*.bin"
    if not folder.is_dir():
        raise QsnnError(f"'{folder}' not found: an N-Caltech101 folder holds {layout}")
    classes = _class_files(folder, layout)
    names = sorted(classes)
    return [(f, i) for i, n in enumerate(names) for f in classes[n]], names


def ncaltech101_split(files: list[tuple[Path, int]], test_fraction: float = 0.2
                      ) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Deterministic stratified split (N-Caltech101 has no official one): within each class, files
    sorted by name, the i-th (0-based) goes to test iff floor((i + 1) f) > floor(i f), f =
    ``test_fraction`` taken as an exact decimal fraction. So each class gives exactly floor(n f) test
    files spread evenly (f = 0.2: indices 4, 9, 14, ...), independent of any RNG or file-system order."""
    f = Fraction(str(test_fraction))
    if not 0 <= f < 1:
        raise QsnnError(f"test_fraction must be in [0, 1), got {test_fraction}")
    by_class: dict[int, list[Path]] = {}
    for path, label in files:
        by_class.setdefault(label, []).append(Path(path))
    train, test = [], []
    for label in sorted(by_class):
        for i, path in enumerate(sorted(by_class[label], key=lambda q: q.name)):
            (test if math.floor(f * (i + 1)) > math.floor(f * i) else train).append((path, label))
    return train, test


def ncaltech101_samples(root, split: str | None = None, test_fraction: float = 0.2) -> Samples:
    """(events, label) of N-Caltech101; ``split`` None = all files, 'train' / 'test' = the
    ``ncaltech101_split`` parts. Class names: ``ncaltech101_files(root)[1]``. Sensor size varies per
    sample (<= ~240x180); pick one that covers ``max x + 1``, ``max y + 1`` for ``events_to_frames``."""
    files, _ = ncaltech101_files(root)
    if split is not None:
        train, test = ncaltech101_split(files, test_fraction)
        files = train if _check_split(split) == "train" else test
    return _file_samples(files, read_nmnist_bin)


def dvsgesture_npy_samples(root, split: str) -> Samples:
    """(events, label) of the common preprocessed DVS128 Gesture copy: ``root/userXX_<lighting>/<class>.npy``.

    Split as IBM's trial lists: users 1-23 train, 24-29 test. Labels are the file stems; a copy numbered
    1..11 (IBM's class ids) is shifted to 0..10, one numbered 0..10 is kept."""
    root = Path(root)
    users = sorted(d for d in root.glob("user*_*") if d.is_dir())
    if not users:
        raise QsnnError(f"'{root}' holds no userXX_<lighting>/ folders; expected the DVS128 Gesture .npy copy "
                        "(root/userXX_<lighting>/<class>.npy) or IBM's release (trials_to_train.txt, ...)")
    test = _check_split(split) == "test"
    files = []
    for d in users:
        try:
            user = int(d.name[4:].split("_")[0])
        except ValueError:
            raise QsnnError(f"'{d}': cannot read the user number from the folder name") from None
        if (user >= 24) == test:
            for f in sorted(d.glob("*.npy")):
                if not f.stem.isdigit():
                    raise QsnnError(f"'{f}': file name is not a class number")
                files.append((f, int(f.stem)))
    if not files:
        raise QsnnError(f"'{root}': no .npy recordings for the {split} split")
    shift = 1 if min(label for _, label in files) >= 1 else 0
    return _file_samples([(f, label - shift) for f, label in files], read_dvsgesture_npy)


def cifar10dvs_samples(root, split: str, test_fraction: float = 0.1) -> Samples:
    """(events, label) of CIFAR10-DVS recordings in AEDAT 3.1, ``root/<class>/*.aedat`` (10 classes,
    labels = sorted folder names). No official split: the same deterministic per-class rule as
    ``ncaltech101_split`` with 10 % test (the common 9:1). The original release is AEDAT 2.0, which
    ``read_aedat31`` refuses by name; convert it to 3.1 first."""
    root = Path(root)
    layout = "root/<class>/*.aedat (AEDAT 3.1)"
    if not root.is_dir():
        raise QsnnError(f"'{root}' not found: a CIFAR10-DVS folder holds {layout}")
    classes = _class_files(root, layout, ".aedat")
    files = [(f, i) for i, n in enumerate(sorted(classes)) for f in classes[n]]
    train, test = ncaltech101_split(files, test_fraction)
    return _file_samples(train if _check_split(split) == "train" else test, read_aedat31)


# ---------------------------------------------------------------------------------------------------
# Frames and denoising
# ---------------------------------------------------------------------------------------------------

def _check_events(events, sensor) -> tuple[int, int]:
    if not isinstance(events, np.ndarray) or events.dtype.names is None or \
            not {"x", "y", "p", "t"} <= set(events.dtype.names):
        raise QsnnError("events must be a structured array with fields x, y, p, t (see make_events)")
    w, h = (int(s) for s in sensor)
    if w < 1 or h < 1:
        raise QsnnError(f"sensor (W, H) must be positive, got {tuple(sensor)}")
    if len(events):
        if int(events["x"].max()) >= w or int(events["y"].max()) >= h:
            raise QsnnError(f"events reach x = {int(events['x'].max())}, y = {int(events['y'].max())}, "
                            f"outside the sensor (W, H) = ({w}, {h})")
        if np.any((events["p"] != 0) & (events["p"] != 1)):
            raise QsnnError("event polarity must be 0 or 1")
    return w, h


def denoise_events(events: np.ndarray, sensor, window_us: int = DEFAULT_DENOISE_US) -> np.ndarray:
    """Neighbourhood support (background-activity) filter, after Delbruck 2008: an event at (x, y, t)
    is kept iff at least one of its 8 neighbouring pixels (not the pixel itself, either polarity) had an
    event at a time in [t - window_us, t]. Decisions use all input events (not only kept ones), so the
    result does not depend on processing order. Vectorised: one ``searchsorted`` per neighbour offset."""
    w, h = _check_events(events, sensor)
    n = len(events)
    if n == 0:
        return events.copy()
    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    order = np.argsort(t, kind="stable")
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    last_le = np.searchsorted(t[order], t, side="right") - 1   # last sorted index with time <= t_i
    pid = y * w + x
    keys = np.sort(pid * n + rank)                             # events grouped by pixel, then time
    keep = np.zeros(n, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx == 0 and dy == 0:
                continue
            nx, ny = x + dx, y + dy
            inside = (nx >= 0) & (nx < w) & (ny >= 0) & (ny < h)
            q = ny * w + nx
            j = np.searchsorted(keys, q * n + last_le, side="right") - 1
            jc = np.clip(j, 0, n - 1)
            hit = inside & (j >= 0) & (keys[jc] // n == q)
            t_nb = t[order[keys[jc] % n]]
            keep |= hit & (t - t_nb <= window_us)
    return events[keep]


def events_to_frames(events: np.ndarray, sensor, timesteps: int, downsample: int = 1,
                     denoise: bool = False, denoise_window_us: int = DEFAULT_DENOISE_US,
                     dtype=np.int32) -> np.ndarray:
    """Count frames [T, 2, H', W'] of one sample: channel 0 = OFF (p = 0), channel 1 = ON (p = 1).

    Time: T equal bins over the sample's own span [t0, t_last], t0 = first event; event -> bin
    ((t - t0) * T) // (t_last - t0 + 1), exact integer arithmetic, so the first event falls in bin 0
    and the last in bin T - 1. Space: with ``downsample`` = k > 1 pixel (x, y) counts in (x // k,
    y // k), i.e. k x k blocks are summed; H' = ceil(H / k), W' = ceil(W / k). ``denoise`` runs
    ``denoise_events`` (window ``denoise_window_us``) at full resolution first. Counts above the
    ``dtype`` maximum saturate. ``sensor`` is (W, H).
    """
    w, h = _check_events(events, sensor)
    if int(timesteps) < 1 or int(downsample) < 1:
        raise QsnnError(f"timesteps and downsample must be >= 1, got {timesteps} and {downsample}")
    timesteps, k = int(timesteps), int(downsample)
    if denoise:
        events = denoise_events(events, (w, h), denoise_window_us)
    hh, ww = -(-h // k), -(-w // k)
    out = np.zeros((timesteps, 2, hh, ww), np.int64)
    if len(events):
        t = events["t"].astype(np.int64)
        t0 = t.min()
        b = ((t - t0) * timesteps) // (t.max() - t0 + 1)
        np.add.at(out, (b, events["p"].astype(np.int64), events["y"].astype(np.int64) // k,
                        events["x"].astype(np.int64) // k), 1)
    info = np.iinfo(dtype)
    return np.minimum(out, info.max).astype(dtype)


# ---------------------------------------------------------------------------------------------------
# Synthetic saccades (SYNTHETIC data)
# ---------------------------------------------------------------------------------------------------

def saccade_offset(phase, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """Image displacement (dx, dy) in pixels at ``phase`` in [0, 1]: three straight saccades of equal
    duration around the triangle (-a/2, -a/2) -> (0, a/2) -> (a/2, -a/2) -> back, a = ``amplitude``
    (the triangular path N-MNIST's sensor moved along, Orchard et al. 2015, here centred and scaled to
    the image)."""
    verts = (np.array([[0.0, 0.0], [0.5, 1.0], [1.0, 0.0], [0.0, 0.0]]) - 0.5) * amplitude
    s = np.clip(np.asarray(phase, np.float64), 0.0, 1.0) * 3.0
    i = np.minimum(s.astype(np.int64), 2)
    frac = (s - i)[..., None]
    d = verts[i] * (1 - frac) + verts[i + 1] * frac
    return d[..., 0], d[..., 1]


def _shifted(padded: np.ndarray, dx: float, dy: float, extra: int, hs: int, ws: int) -> np.ndarray:
    """Bilinear sample of the image moved by (dx, dy): sensor pixel (v, u) reads the image at
    (v - dy, u - dx), zero outside. ``padded`` is the [N, hs, ws] sensor-placed image with ``extra``
    zero pixels more on each side (extra >= max |d| + 2)."""
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy

    def win(ddy, ddx):  # sensor (v, u) <- padded[v + extra - iy - ddy, u + extra - ix - ddx]
        r0, c0 = extra - iy - ddy, extra - ix - ddx
        return padded[:, r0:r0 + hs, c0:c0 + ws]

    return ((1 - fy) * (1 - fx) * win(0, 0) + (1 - fy) * fx * win(0, 1)
            + fy * (1 - fx) * win(1, 0) + fy * fx * win(1, 1))


def synthetic_saccades(images, levels: float, timesteps: int, *, amplitude: float = 1.5,
                       margin: int | None = None, duration_us: int = 300_000, threshold: float = 0.2,
                       threshold_sigma: float = 0.03, eps: float = 0.1, seed: int = 0
                       ) -> tuple[list[np.ndarray], tuple[int, int]]:
    """SYNTHETIC N-MNIST-style event streams from intensity images. Not a recording.

    ``images`` [N, H, W] (or one [H, W]) with values in 0..``levels`` (scikit-learn digits: 16). Each
    image is shown centred on a sensor of (W + 2m, H + 2m) pixels, m = ``margin`` (default
    ceil(amplitude / 2) + 1, so the moving image stays on the sensor), and moved along the three
    saccades of ``saccade_offset`` over ``duration_us``, sampled at
    ``timesteps`` equal steps (bilinear interpolation for subpixel positions). Like a DVS pixel, each
    pixel remembers the log intensity L = log(eps + I / levels) at its last event (initially at step
    0); at step k it emits n = floor(|L - L_ref| / theta) events of polarity ON (increase) or OFF and
    moves L_ref by n * theta toward L. theta = threshold * (1 + threshold_sigma * N(0, 1)) per pixel
    and image (fixed-pattern mismatch, floored at threshold / 10); each event's time is drawn uniformly
    in its step's interval ((k - 1) dt, k dt], dt = duration_us / timesteps, and floored to whole
    microseconds. Both random parts come from
    ``np.random.default_rng(seed)``: the same arguments give the same events.

    Returns (streams, sensor): one ``EVENT_DTYPE`` array per image, and sensor = (W', H').
    """
    imgs = np.asarray(images, np.float64)
    if imgs.ndim == 2:
        imgs = imgs[None]
    if imgs.ndim != 3:
        raise QsnnError(f"images must be [N, H, W] or [H, W], got shape {imgs.shape}")
    if levels <= 0 or int(timesteps) < 1 or threshold <= 0 or eps <= 0 or amplitude < 0:
        raise QsnnError("synthetic_saccades needs levels > 0, timesteps >= 1, threshold > 0, eps > 0, "
                        "amplitude >= 0")
    if imgs.size and (imgs.min() < 0 or imgs.max() > levels):
        raise QsnnError(f"image intensities must lie in [0, {levels}], found [{imgs.min()}, {imgs.max()}]")
    n, h, w = imgs.shape
    m = int(np.ceil(amplitude / 2)) + 1 if margin is None else int(margin)
    if m < 0:
        raise QsnnError(f"margin must be >= 0, got {m}")
    timesteps = int(timesteps)
    rng = np.random.default_rng(seed)
    hs, ws = h + 2 * m, w + 2 * m
    extra = int(np.ceil(amplitude / 2)) + 2
    padded = np.zeros((n, hs + 2 * extra, ws + 2 * extra))
    padded[:, extra + m:extra + m + h, extra + m:extra + m + w] = imgs / levels
    theta = threshold * np.maximum(1 + threshold_sigma * rng.standard_normal((n, hs, ws)), 0.1)
    dxs, dys = saccade_offset(np.arange(timesteps + 1) / timesteps, amplitude)
    ref = np.log(eps + _shifted(padded, dxs[0], dys[0], extra, hs, ws))
    parts = []  # (image, y, x, p, count, step)
    for k in range(1, timesteps + 1):
        diff = np.log(eps + _shifted(padded, dxs[k], dys[k], extra, hs, ws)) - ref
        cnt = np.floor(np.abs(diff) / theta).astype(np.int64)
        ref += np.sign(diff) * cnt * theta
        idx = np.nonzero(cnt)
        if idx[0].size:
            parts.append((idx[0], idx[1], idx[2], (diff[idx] > 0).astype(np.int64), cnt[idx],
                          np.full(idx[0].size, k)))
    dt = duration_us / timesteps
    streams = []
    if parts:
        img, yy, xx, pp, cc, kk = (np.repeat(np.concatenate(c), np.concatenate([q[4] for q in parts]))
                                   for c in zip(*parts))
        u = 1.0 - rng.random(img.size)   # (0, 1]
        tt = np.floor((kk - 1 + u) * dt).astype(np.int64)
        for i in range(n):
            sel = img == i
            streams.append(make_events(xx[sel], yy[sel], pp[sel], tt[sel]))
    else:
        streams = [np.empty(0, EVENT_DTYPE) for _ in range(n)]
    return streams, (ws, hs)
