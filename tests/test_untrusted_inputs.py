"""Untrusted event recordings and input spikes are refused with one QsnnError (one line, naming the file and
the field, saying the fix) or, through the CLI, exit 2 and one `qsnn-lava: error:` line, no traceback and
no output file. Every test crafts real files (checkpoints, IR and netx files: test_untrusted.py, and the
loaders fuzzed in test_fuzz.py)."""
import subprocess
import sys

import numpy as np
import pytest

from qsnn_lava.errors import QsnnError
from clicheck import one_error_line


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "qsnn_lava.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    return p.returncode, p.stdout, p.stderr


# ------------------------------------------------------------------------- events and input spikes
def nmnist_record(x, y, p, t):
    return bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])


def nmnist_tree(root, test_files, train_files=(b"",)):
    """root/Test/3/<i>.bin and root/Train/3/<i>.bin holding the given bytes."""
    for split, files in (("Test", test_files), ("Train", train_files)):
        folder = root / split / "3"
        folder.mkdir(parents=True)
        for i, data in enumerate(files):
            (folder / f"{i:05d}.bin").write_bytes(data)


GOOD = nmnist_record(1, 2, 1, 10) + nmnist_record(30, 33, 0, 900)


def nmnist_ir(path):
    """An IR that takes N-MNIST's 2 x 17 x 17 binned input."""
    from qsnn_lava.ir import LIF, Dense, Layer, Network

    Network((578,), [Layer("fc", Dense(np.ones((10, 578), np.int64)), LIF(10, vth=1, du=4095, dv=0))], 4).save(path)


def test_an_empty_event_file_is_refused_by_name(tmp_path):
    from qsnn_lava.data import encoded, load_dataset
    from qsnn_lava.events import read_nmnist_bin

    nmnist_tree(tmp_path, [GOOD, b""])
    with pytest.raises(QsnnError, match=r"00001\.bin' is empty \(0 bytes\)"):
        read_nmnist_bin(tmp_path / "Test" / "3" / "00001.bin")
    with pytest.raises(QsnnError, match=r"00001\.bin' is empty"):
        encoded(load_dataset("nmnist", tmp_path, timesteps=4).test, 4)


def test_an_event_outside_the_sensor_names_its_file(tmp_path):
    from qsnn_lava.data import encoded, load_dataset

    nmnist_tree(tmp_path, [GOOD, nmnist_record(199, 3, 1, 50)])
    data = load_dataset("nmnist", tmp_path, timesteps=4)
    with pytest.raises(QsnnError) as e:
        encoded(data.test, 4)
    assert "00001.bin" in str(e.value) and "x = 199" in str(e.value) and "(34, 34)" in str(e.value)


def test_evaluating_n_samples_reads_only_those_files(tmp_path, capsys):
    """The training split is never read to evaluate test samples, nor test files past the first N; the
    progress bar shows only when asked for."""
    from qsnn_lava.data import encoded, load_dataset

    nmnist_tree(tmp_path, [GOOD, GOOD, b""], train_files=[b"", b"\x01"])  # broken files it must not read
    data = load_dataset("nmnist", tmp_path, timesteps=4)
    x, y = encoded(data.test, 4, samples=2)
    assert x.shape == (4, 2, 578) and y.tolist() == [3, 3] and int(x.sum()) == 4
    assert "nmnist" not in capsys.readouterr().err
    with pytest.raises(QsnnError, match=r"Test/3/00002\.bin' is empty"):
        encoded(data.test, 4, samples=3)
    with pytest.raises(QsnnError, match=r"Train/3/00000\.bin' is empty"):
        data.train.x
    encoded(load_dataset("nmnist", tmp_path, timesteps=4, progress=True).test, 4, samples=2)
    assert "nmnist test" in capsys.readouterr().err


def test_cli_refuses_a_broken_event_file_and_writes_nothing(tmp_path):
    nmnist_ir(tmp_path / "m.ir.h5")
    nmnist_tree(tmp_path / "d", [GOOD, GOOD, b""], train_files=[b""])
    out = tmp_path / "y.npy"
    code, _, err = cli("simulate", tmp_path / "m.ir.h5", "--dataset", "nmnist", "--data-dir", tmp_path / "d",
                       "--samples", 2, "--output", out, "-q")
    assert code == 0, err  # two good test samples: neither the broken test file nor Train/ is read
    assert np.load(out).shape == (2, 4, 10)
    out.unlink()
    code, _, err = cli("simulate", tmp_path / "m.ir.h5", "--dataset", "nmnist", "--data-dir", tmp_path / "d",
                       "--output", out, "-q")
    one_error_line(code, err, "00002.bin", "empty")
    assert not out.exists()


@pytest.mark.parametrize("array,words", [
    (np.zeros((4, 578), [("x", "<u2"), ("t", "<i8")]), ["structured"]),
    (np.full((4, 578), 0.5), ["0/1"]),
    (np.full((4, 578), np.nan), ["0/1"]),
    (np.zeros((4, 578), np.complex64), ["complex64"]),
])
def test_input_spikes_that_are_not_0_1_arrays_are_refused(tmp_path, array, words):
    from qsnn_lava.data import check_spike_array

    with pytest.raises(QsnnError) as e:
        check_spike_array(array, "'x.npy'")
    assert str(e.value).startswith("'x.npy'") and all(w in str(e.value) for w in words)
    assert check_spike_array(np.ones((2, 3), np.float32), "x").dtype == np.uint8


def test_cli_refuses_a_structured_input_array(tmp_path):
    nmnist_ir(tmp_path / "m.ir.h5")
    np.save(tmp_path / "x.npy", np.zeros((4, 578), [("x", "<u2"), ("t", "<i8")]))
    code, _, err = cli("simulate", tmp_path / "m.ir.h5", "--input", tmp_path / "x.npy", "--output",
                       tmp_path / "y.npy", "-q")
    one_error_line(code, err, "x.npy")
    assert not (tmp_path / "y.npy").exists()
