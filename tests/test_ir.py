import h5py
import numpy as np
import pytest

from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import LIF, Dense, Layer, Network
from netgen import random_network


def test_roundtrip_is_exact(tmp_path, rng):
    net = random_network(rng)
    net.meta = {"note": "x"}
    net.save(tmp_path / "n.h5")
    back = Network.load(tmp_path / "n.h5")
    assert back.timesteps == net.timesteps and back.input_shape == net.input_shape and back.meta == net.meta
    for a, b in zip(net.layers, back.layers):
        assert np.array_equal(a.synapse.weight, b.synapse.weight)
        assert a.synapse.weight_exp == b.synapse.weight_exp
        assert (a.neuron.vth, a.neuron.du, a.neuron.dv, a.neuron.bias_exp) == \
               (b.neuron.vth, b.neuron.du, b.neuron.dv, b.neuron.bias_exp)
        assert np.array_equal(a.neuron.bias_mant, b.neuron.bias_mant)


def one_layer(w, **lif):
    kw = dict(n=np.asarray(w).shape[0], vth=10, du=4095, dv=2048)
    kw.update(lif)
    return Network((np.asarray(w).shape[1],), [Layer("fc1", Dense(w), LIF(**kw))], 4)


@pytest.mark.parametrize("w,lif,field", [
    ([[129, -1]], {}, "weight = 129"),            # odd mixed weight needs 9 bits
    ([[300, 1]], {}, "weight = 300"),             # one sign: 8-bit magnitude
    ([[1, -1]], {"vth": 1 << 17}, "vth"),
    ([[1, -1]], {"dv": 4096}, "dv"),
    ([[1, -1]], {"bias_mant": [5000]}, "bias_mant"),
    ([[1, -1]], {"bias_exp": 8}, "bias_exp"),
])
def test_values_loihi_cannot_hold_are_refused(w, lif, field):
    with pytest.raises(QsnnError, match=field) as e:
        one_layer(w, **lif).validate()
    assert "layer 0 (fc1)" in str(e.value)


def test_even_mixed_weights_up_to_256_are_legal():
    one_layer([[-256, 254, 2]]).validate()


def test_shape_mismatch_named():
    net = Network((3,), [Layer("a", Dense(np.ones((4, 3), int)), LIF(4, 1, 0, 0)),
                         Layer("b", Dense(np.ones((2, 5), int)), LIF(2, 1, 0, 0))], 2)
    with pytest.raises(QsnnError, match="layer 1 .*expects 5 inputs"):
        net.validate()


def test_bad_files(tmp_path, rng):
    with pytest.raises(QsnnError, match="not found"):
        Network.load(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(QsnnError, match="not an HDF5 file"):
        Network.load(tmp_path / "junk.h5")
    random_network(rng).save(tmp_path / "v.h5")
    with h5py.File(tmp_path / "v.h5", "a") as f:
        f.attrs["version"] = 99
    with pytest.raises(QsnnError, match="version 99"):
        Network.load(tmp_path / "v.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(QsnnError, match="not a qsnn-lava IR"):
        Network.load(tmp_path / "other.h5")
    random_network(rng).save(tmp_path / "cut.h5")
    with h5py.File(tmp_path / "cut.h5", "a") as f:
        del f["layers/1/synapse/weight"]
    with pytest.raises(QsnnError, match="missing"):
        Network.load(tmp_path / "cut.h5")


def test_invalid_network_writes_nothing(tmp_path):
    with pytest.raises(QsnnError):
        one_layer([[400, 1]]).save(tmp_path / "bad.h5")
    assert list(tmp_path.iterdir()) == []
