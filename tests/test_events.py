"""Event readers on small files the tests write in each real on-disk format, frame binning, denoising
and the (synthetic) saccade generator. Nothing is downloaded."""
import struct
import time

import numpy as np
import pytest

from qsnn_lava import events as E
from qsnn_lava.errors import QsnnError


# --- writers in the real formats ----------------------------------------------------------------

def nmnist_bytes(records):
    """records: (x, y, p, t) with t < 2**23 -> 5-byte N-MNIST records."""
    out = bytearray()
    for x, y, p, t in records:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


AEDAT_HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                b"#Start-Time: 2017-01-01 12:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")


def polarity_packet(events, ts_overflow=0, capacity=None, valid=1):
    """events: (x, y, p, t) -> AEDAT 3.1 polarity packet (type 1, 8-byte events, valid mark set)."""
    payload = b"".join(struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, t)
                       for x, y, p, t in events)
    cap = len(events) if capacity is None else capacity
    payload += b"\0" * 8 * (cap - len(events))
    head = struct.pack("<hhiiiiii", 1, 1, 8, 4, ts_overflow, cap, len(events), len(events))
    return head + payload


def other_packet(etype, size, n):
    head = struct.pack("<hhiiiiii", etype, 1, size, 4, 0, n, n, n)
    return head + bytes(range(7, 7 + size * n)) if size * n < 200 else head + b"\x23" * size * n


def ev_tuples(ev):
    return [(int(e["x"]), int(e["y"]), int(e["p"]), int(e["t"])) for e in ev]


# --- N-MNIST / N-Caltech101 .bin ----------------------------------------------------------------

def test_nmnist_bin_reads_exact_events(tmp_path):
    recs = [(0, 0, 0, 0), (33, 5, 1, 17), (12, 33, 1, 65_536 + 258), (7, 8, 0, 2 ** 23 - 1)]
    f = tmp_path / "00001.bin"
    f.write_bytes(nmnist_bytes(recs))
    ev = E.read_nmnist_bin(f)
    assert ev.dtype == E.EVENT_DTYPE and ev_tuples(ev) == recs


def test_nmnist_overflow_marker_adds_increment_and_is_dropped(tmp_path):
    recs = [(1, 2, 1, 8000), (0, 240, 0, 0), (3, 4, 0, 100), (0, 240, 1, 5), (5, 6, 1, 50)]
    f = tmp_path / "wrap.bin"
    f.write_bytes(nmnist_bytes(recs))
    inc = 2 ** 13  # gorchard/event-Python eventvision.py, tonic read_mnist_file
    assert ev_tuples(E.read_nmnist_bin(f)) == [(1, 2, 1, 8000), (3, 4, 0, 100 + inc), (5, 6, 1, 50 + 2 * inc)]
    wrap = E.read_nmnist_bin(f, overflow_increment=2 ** 23)
    assert wrap["t"].tolist() == [8000, 100 + 2 ** 23, 50 + 2 ** 24]


def test_truncated_bin_is_named(tmp_path):
    f = tmp_path / "bad.bin"
    f.write_bytes(nmnist_bytes([(1, 2, 1, 3)]) + b"\x01\x02")
    with pytest.raises(QsnnError, match=r"bad\.bin.*truncated.*multiple of 5"):
        E.read_nmnist_bin(f)


def test_missing_bin_is_named(tmp_path):
    with pytest.raises(QsnnError, match="nothere.bin"):
        E.read_nmnist_bin(tmp_path / "nothere.bin")


def write_nmnist_tree(root, split, per_digit):
    for digit, n in per_digit.items():
        d = root / split / str(digit)
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"{i:05d}.bin").write_bytes(nmnist_bytes([(digit, i, 1, 10 * i + digit)]))


def test_nmnist_folder(tmp_path):
    write_nmnist_tree(tmp_path, "Train", {0: 2, 7: 1})
    write_nmnist_tree(tmp_path, "Test", {3: 1})
    train = list(E.nmnist_samples(tmp_path, "train"))
    assert [lab for _, lab in train] == [0, 0, 7]
    assert ev_tuples(train[2][0]) == [(7, 0, 1, 7)]
    (test_ev, test_lab), = E.nmnist_samples(tmp_path, "test")
    assert test_lab == 3 and ev_tuples(test_ev) == [(3, 0, 1, 3)]


def test_nmnist_wrong_layout(tmp_path):
    with pytest.raises(QsnnError, match=r"Train.*not found.*Train/<digit>"):
        E.nmnist_samples(tmp_path, "train")
    (tmp_path / "Test" / "seven").mkdir(parents=True)
    (tmp_path / "Test" / "seven" / "a.bin").write_bytes(b"")
    with pytest.raises(QsnnError, match=r"seven.*not a digit folder"):
        E.nmnist_samples(tmp_path, "test")
    with pytest.raises(QsnnError, match="split must be"):
        E.nmnist_samples(tmp_path, "val")


def test_ncaltech101_folder_and_deterministic_split(tmp_path):
    for cls, n in (("airplanes", 10), ("Faces_easy", 5), ("ant", 3)):
        d = tmp_path / "Caltech101" / cls
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"image_{i + 1:04d}.bin").write_bytes(nmnist_bytes([(i, 1, 0, i)]))
    files, names = E.ncaltech101_files(tmp_path)
    assert names == ["Faces_easy", "airplanes", "ant"] and len(files) == 18
    train, test = E.ncaltech101_split(files, 0.2)
    assert [(p.name, lab) for p, lab in test] == [("image_0005.bin", 0), ("image_0005.bin", 1),
                                                  ("image_0010.bin", 1)]
    assert len(train) == 15 and not {p for p, _ in train} & {p for p, _ in test}
    assert [lab for _, lab in E.ncaltech101_samples(tmp_path, "test")] == [0, 1, 1]
    with pytest.raises(QsnnError, match=r"Caltech101.*not found"):
        E.ncaltech101_files(tmp_path / "nowhere")


# --- AEDAT 3.1 ----------------------------------------------------------------------------------

def test_aedat31_packets_overflow_and_skipped_types(tmp_path):
    p1 = [(0, 0, 1, 10), (127, 3, 0, 20)]
    p2 = [(5, 127, 1, 7), (64, 64, 0, 2 ** 31 - 1)]
    body = (polarity_packet(p1, capacity=4)          # capacity > number: padding skipped
            + other_packet(0, 8, 2)                  # special events: skipped
            + other_packet(2, 21, 1)                 # frame-like packet of odd size: skipped
            + polarity_packet(p2, ts_overflow=1))
    f = tmp_path / "user01_fluorescent.aedat"
    f.write_bytes(AEDAT_HEADER + body)
    ev = E.read_aedat31(f)
    hi = 2 ** 31
    assert ev_tuples(ev) == [(0, 0, 1, 10), (127, 3, 0, 20), (5, 127, 1, hi + 7), (64, 64, 0, hi + hi - 1)]


def test_aedat31_valid_mark(tmp_path):
    f = tmp_path / "v.aedat"
    f.write_bytes(AEDAT_HEADER + polarity_packet([(1, 1, 1, 5)], valid=0) + polarity_packet([(2, 2, 0, 6)]))
    assert len(E.read_aedat31(f)) == 2
    assert ev_tuples(E.read_aedat31(f, valid_only=True)) == [(2, 2, 0, 6)]


def test_aedat31_header_only_is_empty(tmp_path):
    f = tmp_path / "empty.aedat"
    f.write_bytes(AEDAT_HEADER)
    assert len(E.read_aedat31(f)) == 0


@pytest.mark.parametrize("cut, what", [(10, "packet header"), (28 + 8 + 3, "packet at offset")])
def test_truncated_aedat_is_named(tmp_path, cut, what):
    f = tmp_path / "cut.aedat"
    f.write_bytes(AEDAT_HEADER + polarity_packet([(1, 2, 1, 3), (4, 5, 0, 6)])[:cut])
    with pytest.raises(QsnnError, match=rf"cut\.aedat.*truncated.*{what}"):
        E.read_aedat31(f)


def test_aedat_missing_header_end_and_wrong_version(tmp_path):
    f = tmp_path / "nohead.aedat"
    f.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n" + polarity_packet([(1, 2, 1, 3)]))
    with pytest.raises(QsnnError, match=r"nohead\.aedat.*no AEDAT 3.1 header end"):
        E.read_aedat31(f)
    g = tmp_path / "eof.aedat"
    g.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW")
    with pytest.raises(QsnnError, match=r"eof\.aedat.*no AEDAT 3.1 header end"):
        E.read_aedat31(g)
    old = tmp_path / "cifar.aedat"
    old.write_bytes(b"#!AER-DAT2.0\r\n# End of ASCII Header\r\n" + b"\0" * 8)
    with pytest.raises(QsnnError, match=r"cifar\.aedat.*AEDAT 2\.0.*3\.1 only"):
        E.read_aedat31(old)


# --- DVS128 Gesture -----------------------------------------------------------------------------

def write_gesture(root, trial, events, rows, labels=True):
    (root / f"{trial}.aedat").write_bytes(AEDAT_HEADER + polarity_packet(events))
    if labels:
        (root / f"{trial}_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in rows))


def test_dvsgesture_folder(tmp_path):
    write_gesture(tmp_path, "user01_fluorescent",
                  [(1, 1, 1, 100), (2, 2, 0, 150), (3, 3, 1, 200), (4, 4, 1, 300), (5, 5, 0, 400)],
                  [(1, 100, 200), (11, 200, 401)])
    write_gesture(tmp_path, "user24_led", [(9, 9, 1, 1000), (8, 8, 0, 1500)], [(5, 900, 1600)])
    (tmp_path / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n\n")
    (tmp_path / "trials_to_test.txt").write_text("user24_led.aedat\r\n")
    train = list(E.dvsgesture_samples(tmp_path, "train"))
    assert [lab for _, lab in train] == [0, 10]
    assert ev_tuples(train[0][0]) == [(1, 1, 1, 100), (2, 2, 0, 150)]          # start <= t < end
    assert ev_tuples(train[1][0]) == [(3, 3, 1, 200), (4, 4, 1, 300), (5, 5, 0, 400)]
    (ev, lab), = E.dvsgesture_samples(tmp_path, "test")
    assert lab == 4 and ev["t"].tolist() == [1000, 1500]


def test_dvsgesture_missing_files(tmp_path):
    with pytest.raises(QsnnError, match=r"trials_to_train\.txt.*not found"):
        E.dvsgesture_samples(tmp_path, "train")
    write_gesture(tmp_path, "user02_natural", [(1, 1, 1, 1)], [], labels=False)
    (tmp_path / "trials_to_test.txt").write_text("user02_natural.aedat\n")
    with pytest.raises(QsnnError, match=r"user02_natural_labels\.csv.*not found"):
        E.dvsgesture_samples(tmp_path, "test")
    (tmp_path / "trials_to_test.txt").write_text("user03_lab.aedat\n")
    with pytest.raises(QsnnError, match=r"user03_lab\.aedat.*listed in.*trials_to_test\.txt"):
        E.dvsgesture_samples(tmp_path, "test")


def test_gesture_labels_bad_class(tmp_path):
    f = tmp_path / "user05_led_labels.csv"
    f.write_text("class,startTime_usec,endTime_usec\n12,0,10\n")
    with pytest.raises(QsnnError, match=r"user05_led_labels\.csv.*line 2"):
        E.read_gesture_labels(f)


def test_dvsgesture_npy_copy(tmp_path):
    arr = np.array([[3, 4, 1, 0.5], [127, 0, 0, 2.001], [1, 2, 1, 1.25]])   # x, y, p, t (ms)
    f = tmp_path / "0.npy"
    np.save(f, arr)
    assert ev_tuples(E.read_dvsgesture_npy(f)) == [(3, 4, 1, 500), (1, 2, 1, 1250), (127, 0, 0, 2001)]
    np.save(f, arr[:, :3])
    with pytest.raises(QsnnError, match=r"0\.npy.*shape"):
        E.read_dvsgesture_npy(f)


# --- frames and denoising -----------------------------------------------------------------------

def test_events_to_frames_counts():
    # span t in [1000, 1099], T = 4 -> bins of 25 us: [1000,1025) [1025,1050) [1050,1075) [1075,1100)
    ev = E.make_events(x=[0, 0, 3, 2, 2, 1], y=[0, 0, 1, 2, 2, 0], p=[1, 1, 0, 1, 0, 0],
                       t=[1000, 1024, 1025, 1074, 1075, 1099])
    fr = E.events_to_frames(ev, sensor=(4, 3), timesteps=4)
    assert fr.shape == (4, 2, 3, 4) and fr.sum() == 6
    expect = np.zeros((4, 2, 3, 4), int)
    expect[0, 1, 0, 0] = 2
    expect[1, 0, 1, 3] = 1
    expect[2, 1, 2, 2] = 1
    expect[3, 0, 2, 2] = 1
    expect[3, 0, 0, 1] = 1
    assert np.array_equal(fr, expect)
    down = E.events_to_frames(ev, sensor=(4, 3), timesteps=1, downsample=2)
    assert down.shape == (1, 2, 2, 2)
    assert down[0, 1].tolist() == [[2, 0], [0, 1]] and down[0, 0].tolist() == [[1, 1], [0, 1]]
    assert E.events_to_frames(ev[:0], (4, 3), 2).sum() == 0
    with pytest.raises(QsnnError, match="outside the sensor"):
        E.events_to_frames(ev, sensor=(3, 3), timesteps=2)


def test_denoise_keeps_supported_events():
    ev = E.make_events(x=[5, 6, 20, 5], y=[5, 5, 20, 5], p=[1, 0, 1, 1], t=[0, 3000, 3500, 20000])
    kept = E.denoise_events(ev, (32, 32), window_us=5000)
    assert ev_tuples(kept) == [(6, 5, 0, 3000)]        # (5,5)@0 had no earlier neighbour; (20,20) alone
    fr = E.events_to_frames(ev, (32, 32), timesteps=2, denoise=True)
    assert fr.sum() == 1


# --- synthetic saccades (SYNTHETIC data) --------------------------------------------------------

def test_synthetic_saccades_deterministic_and_nonempty():
    from sklearn.datasets import load_digits

    imgs = load_digits().images[:6]
    a, sensor = E.synthetic_saccades(imgs, levels=16, timesteps=24, seed=3)
    b, _ = E.synthetic_saccades(imgs, levels=16, timesteps=24, seed=3)
    c, _ = E.synthetic_saccades(imgs, levels=16, timesteps=24, seed=4)
    assert sensor == (12, 12) and len(a) == 6
    assert all(len(s) > 50 and np.array_equal(s, t) for s, t in zip(a, b))
    assert not all(np.array_equal(s, t) for s, t in zip(a, c))
    for s in a:
        assert np.all(np.diff(s["t"]) >= 0) and s["t"].min() >= 0 and s["t"].max() <= 300_000
        assert set(np.unique(s["p"])) == {0, 1}
    fr = E.events_to_frames(a[0], sensor, timesteps=8)
    assert fr.shape == (8, 2, 12, 12) and fr.sum() == len(a[0])
    blank, _ = E.synthetic_saccades(np.zeros((1, 8, 8)), levels=16, timesteps=6)
    assert len(blank[0]) == 0
    with pytest.raises(QsnnError, match="intensities"):
        E.synthetic_saccades(imgs * 2, levels=16, timesteps=6)


# --------------------------------------------------------------------- through the pipeline
def test_nmnist_folder_becomes_spike_frames(tmp_path):
    from qsnn_lava.data import encoded, load_dataset

    for split in ("Train", "Test"):
        d = tmp_path / split / "3"
        d.mkdir(parents=True)
        (d / "a.bin").write_bytes(nmnist_bytes([(0, 0, 1, 0), (33, 33, 0, 999), (4, 6, 1, 500)]))
    data = load_dataset("nmnist", tmp_path, timesteps=4)
    assert data.n_in == 2 * 17 * 17 and data.test.y.tolist() == [3]
    x, y = encoded(data.test, 4)
    assert x.shape == (4, 1, 578) and x.sum() == 3  # three events, three distinct (bin, channel, pixel)
    frame = x[:, 0].reshape(4, 2, 17, 17)
    assert frame[0, 1, 0, 0] == 1 and frame[3, 0, 16, 16] == 1 and frame[2, 1, 3, 2] == 1
    with pytest.raises(QsnnError, match="binned into 4 time steps"):
        encoded(data.test, 8)


def test_event_dataset_needs_a_folder():
    from qsnn_lava.data import load_dataset

    with pytest.raises(QsnnError, match="--data-dir"):
        load_dataset("dvsgesture", None)


@pytest.mark.lava
def test_synthetic_events_train_convert_verify_on_lava(tmp_path):
    import json
    import subprocess
    import sys

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "qsnn_lava.cli", *map(str, a)], capture_output=True,
                              text=True, timeout=600)

    p = cli("train", "--dataset", "synthetic-saccades", "--bits", "2", "--theta", "4", "--lr", "3e-3",
            "--epochs", "3", "--hidden", "64", "--out", tmp_path / "m.pt", "-q")
    assert p.returncode == 0, p.stderr
    p = cli("verify", tmp_path / "m.pt", "--dataset", "synthetic-saccades", "--samples", 20, "--out",
            tmp_path / "v", "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    assert rep["spike_mismatches"] == {"trained_vs_reference": 0, "reference_vs_lava": 0}
    assert rep["accuracy"]["lava"] > 0.3


def test_cifar10dvs_folder_split_and_frames(tmp_path):
    from qsnn_lava.data import load_dataset

    for c, name in enumerate(("airplane", "cat")):
        d = tmp_path / name
        d.mkdir()
        for i in range(10):
            (d / f"{i:04d}.aedat").write_bytes(AEDAT_HEADER + polarity_packet([(c, i, 1, 5), (100, 127, 0, 90)]))
    data = load_dataset("cifar10dvs", tmp_path, timesteps=4)
    assert data.test.y.tolist() == [0, 1] and len(data.train.y) == 18  # file 0009 of each class is test
    assert data.n_in == 2 * 32 * 32 and int(data.test.x.sum()) == 4
    (tmp_path / "cat" / "0000.aedat").write_bytes(b"#!AER-DAT2.0\r\n" + b"\0" * 16)
    data = load_dataset("cifar10dvs", tmp_path, timesteps=4)  # the train split is read when it is used
    with pytest.raises(QsnnError, match="0000.aedat"):
        data.train.x


def test_denoise_reaches_the_pipeline():
    from qsnn_lava.data import load_dataset

    plain = load_dataset("synthetic-saccades", timesteps=4)
    clean = load_dataset("synthetic-saccades", timesteps=4, denoise=True)
    assert clean.test.x.shape == plain.test.x.shape and 0 < clean.test.x.sum() < plain.test.x.sum()


def test_dvsgesture_npy_copy_through_the_loader(tmp_path):
    from qsnn_lava.data import load_dataset

    for user, cls in ((1, 3), (23, 11), (24, 1)):
        d = tmp_path / f"user{user:02d}_fluorescent"
        d.mkdir()
        np.save(d / f"{cls}.npy", np.array([[5, 6, 1, 0.0], [127, 127, 0, 2.5]]))
    data = load_dataset("dvsgesture", tmp_path, timesteps=2)
    assert data.train.y.tolist() == [2, 10] and data.test.y.tolist() == [0]  # 1..11 -> 0..10; user 24 is test
    assert data.n_in == 2 * 32 * 32 and int(data.test.x.sum()) == 2


# --- parallel binning (data.bin_samples with workers) -------------------------------------------------

def write_random_nmnist(root, split, n, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / split / str(i % 10)
        d.mkdir(parents=True, exist_ok=True)
        k = int(rng.integers(5, 400))
        recs = list(zip(rng.integers(0, 34, k), rng.integers(0, 34, k), rng.integers(0, 2, k),
                        np.sort(rng.integers(0, 300_000, k))))
        (d / f"{i:05d}.bin").write_bytes(nmnist_bytes(recs))


def test_parallel_binning_gives_the_same_spikes_and_names_a_bad_file(tmp_path):
    """Two worker processes bin N-MNIST files into the same array as one process; a truncated file is named
    in the one error, and no worker outlives the call."""
    import os

    from qsnn_lava.data import BIN_CHUNK, bin_samples
    from procs import descendants

    write_random_nmnist(tmp_path, "Train", 3 * BIN_CHUNK + 5)
    samples = E.nmnist_samples(tmp_path, "train")
    n = len(samples)
    one = bin_samples(samples, n, E.NMNIST_SENSOR, 4, 2)
    two = bin_samples(samples, n, E.NMNIST_SENSOR, 4, 2, workers=2)
    assert one.any() and np.array_equal(one, two)
    bad = samples.files[2 * BIN_CHUNK + 1]
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(QsnnError, match=f"'{bad}'.*truncated"):
        bin_samples(samples, n, E.NMNIST_SENSOR, 4, 2, workers=2)
    assert descendants(os.getpid()) == {}  # (multiprocessing's resource tracker lives as long as we do)


def test_sigterm_ends_the_binning_workers(tmp_path):
    """SIGTERM during a parallel binning (files read slowly): the process and its workers are gone in seconds."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from procs import descendants, still_alive, wait_for

    write_random_nmnist(tmp_path, "Train", 200)
    tests = str(Path(__file__).parent)
    script = (f"import sys; sys.path.insert(0, {tests!r})\n"
              "import signal\n"
              "from qsnn_lava import events as E\n"
              "from qsnn_lava.cli import _on_sigterm\n"
              "from qsnn_lava.data import bin_samples\n"
              "from procs import slow_read\n"
              "signal.signal(signal.SIGTERM, _on_sigterm)\n"
              f"s = E.nmnist_samples({str(tmp_path)!r}, 'train')\n"
              "s.read_one = slow_read\n"
              "bin_samples(s, len(s), E.NMNIST_SENSOR, 4, 2, workers=2)\n"
              "print('finished')\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = wait_for(lambda: (lambda d: d if len(d) >= 2 else None)(descendants(p.pid)), 60, "the workers")
        time.sleep(0.5)
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=10)
        assert "finished" not in out
        wait_for(lambda: still_alive(running) == [], 5, "the binning workers to end")
    finally:
        p.kill()
