"""Datasets from local files only: Fashion-MNIST's idx format written by the test itself."""
import gzip
import struct

import numpy as np
import pytest

from qsnn_lava.data import load_dataset, read_idx
from qsnn_lava.errors import QsnnError


def write_idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


@pytest.fixture
def fashion_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return tmp_path


def test_fashion_mnist_reads_idx_exactly(fashion_dir):
    d = load_dataset("fashion-mnist", fashion_dir)
    imgs = read_idx(fashion_dir / "t10k-images-idx3-ubyte.gz")
    assert d.test.x.shape == (5, 784) and np.array_equal(d.test.x, imgs.reshape(5, 784))
    assert d.train.levels == 255 and len(d.train.y) == 12 and d.n_in == 784


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(QsnnError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)


def test_truncated_idx_is_named(fashion_dir):
    p = fashion_dir / "t10k-images-idx3-ubyte.gz"
    raw = gzip.open(p).read()
    with gzip.open(p, "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(QsnnError, match="t10k-images.*truncated"):
        load_dataset("fashion-mnist", fashion_dir)


def test_unknown_dataset():
    with pytest.raises(QsnnError, match="unknown dataset"):
        load_dataset("cifar11")
