"""Fine-tuning (qsnn_lava/irmodel.py, ql.finetune, `qsnn-lava finetune`): the trainable model of an IR equals
the reference simulator bit for bit, keeps every register legal and every fixed field fixed, learns, and
its result runs identically on the reference and on Lava (trained = deployed)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import qsnn_lava as ql
from clicheck import one_error_line
from netgen import random_network, random_spikes
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import LIF, Conv, Dense, Layer, Network, QMem, Skip, sum_pool, weight_limits
from qsnn_lava.irmodel import IRModel
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate


def conv_net(rng) -> Network:
    """conv (bias) -> sum pool -> conv with a skip from the first conv's map -> qmem dense readout."""
    c1 = Conv(rng.integers(-30, 31, (3, 2, 3, 3)), (2, 6, 6), padding=1)
    pool = sum_pool((3, 6, 6), 2)
    c2 = Conv(rng.integers(-30, 31, (4, 3, 3, 3)), (3, 3, 3), padding=1)
    skip = Skip("c1", Dense(rng.integers(-6, 7, (36, 108)), weight_exp=-1))
    layers = [Layer("c1", c1, LIF(108, vth=20, du=3000, dv=1000, bias_mant=rng.integers(-40, 80, 108), bias_exp=2)),
              Layer("pool", pool, LIF(27, vth=0, du=4095, dv=4095)),
              Layer("c2", c2, LIF(36, vth=15, du=4095, dv=2048), skips=[skip]),
              Layer("out", Dense(rng.integers(-40, 41, (5, 36)), weight_exp=1),
                    QMem(5, vth=30, du=2000, dv=500, mem_bits=4, mem_shift=9))]
    return Network((2, 6, 6), layers, timesteps=6).validate()


def mismatches(a, b) -> int:
    return sum(int((p != q).sum()) for p, q in zip(a, b))


def test_the_model_of_an_ir_is_the_reference_simulator_exactly(rng):
    nets = [random_network(rng, sizes=(12, 9, 6), timesteps=6) for _ in range(4)] + [conv_net(rng)]
    for net in nets:
        x = random_spikes(rng, net, 24)
        ref = simulate(net, x)
        model = IRModel(net)
        assert mismatches(evaluate(model, x).spikes, ref.spikes) == 0  # eval: int64
        model.train()
        with torch.no_grad():  # training forward: float64 holding the same integers
            got = [s.numpy() for s in model(torch.from_numpy(x.astype(np.float64)))]
        assert mismatches(got, ref.spikes) == 0
        assert sum(int(s.sum()) for s in ref.spikes) > 0
        back = model.to_ir()  # untrained: the identical network
        for a, b in zip(net.layers, back.layers):
            assert np.array_equal(a.synapse.weight, b.synapse.weight)
            assert np.array_equal(a.neuron.bias_mant, b.neuron.bias_mant)
            assert [np.array_equal(p.synapse.weight, q.synapse.weight) for p, q in zip(a.skips, b.skips)] == \
                [True] * len(a.skips)


def test_learned_integers_stay_legal_and_the_fixed_fields_stay_fixed(rng):
    net = conv_net(rng)
    even = Layer("even", Dense(2 * rng.integers(-128, 128, (3, 5))), LIF(3, vth=9, du=4095, dv=0))
    pos = Layer("pos", Dense(rng.integers(0, 200, (2, 3))), LIF(2, vth=9, du=4095, dv=0))
    net = Network(net.input_shape, net.layers + [even, pos], net.timesteps)
    model = IRModel(net)
    with torch.no_grad():  # what a wild optimiser step could do
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 300)
    tuned = model.to_ir()  # validates
    for a, b in zip(net.layers, tuned.layers):
        lo, hi = weight_limits(a.synapse.weight)
        if a.synapse.type == "conv" and lo < 0 < hi:  # Lava's Conv: no even 9-bit values
            lo, hi = -128, 127
        assert lo <= b.synapse.weight.min() and b.synapse.weight.max() <= hi, a.name
        assert not np.array_equal(a.synapse.weight, b.synapse.weight)
        for key in ("vth", "du", "dv", "bias_exp", "n"):
            assert getattr(a.neuron, key) == getattr(b.neuron, key)
        assert a.synapse.weight_exp == b.synapse.weight_exp and type(a.neuron) is type(b.neuron)
        assert -4096 <= b.neuron.bias_mant.min() and b.neuron.bias_mant.max() <= 4095
    assert (tuned.layers[-2].synapse.weight % 2 == 0).all()  # even 9-bit values stay even
    assert tuned.layers[-1].synapse.weight.min() >= 0  # one sign stays one sign
    assert tuned.layers[-3].neuron.mem_shift == 9
    frozen = IRModel(net, biases=False)
    assert not frozen.layer_params[0].bias_latent.requires_grad


def test_a_layer_with_recurrent_synapses_is_refused_by_name(rng):
    net = random_network(rng)
    net.layers[1].recurrent = Dense(np.eye(6, dtype=int))
    with pytest.raises(QsnnError, match=r"layer 1 \(l1\) has recurrent synapses"):
        IRModel(net)


def test_a_readout_layer_is_refused_by_name(rng):
    from qsnn_lava.ir import Readout

    net = random_network(rng)
    last = net.layers[-1]
    last.neuron = Readout(last.neuron.n, du=last.neuron.du, dv=last.neuron.dv)
    with pytest.raises(QsnnError, match=rf"layer {len(net.layers) - 1} \({last.name}\) has a non-spiking readout"):
        IRModel(net)


@pytest.fixture(scope="module")
def coarse():
    """A digits network whose weights lost precision in conversion: a 1-epoch 64-32-10 net, its mantissas
    rounded to multiples of 4 (as a coarse import would)."""
    net = ql.convert(ql.train(epochs=1, hidden=[32], timesteps=6, bits=6, seed=3))
    for layer in net.layers:
        layer.synapse.weight = 4 * np.round(layer.synapse.weight / 4).astype(np.int64)
    return net


def test_finetune_recovers_accuracy_and_trained_equals_deployed(coarse, tmp_path):
    out = tmp_path / "tuned.ir.h5"
    tuned = ql.finetune(coarse, epochs=2, lr=0.3, train_samples=600, samples=200, out=out)
    ft = tuned.meta["finetune"]
    assert ft["accuracy_after"] > ft["accuracy_before"] + 0.05, ft
    x, y = ql.encode(ql.load_dataset("digits", timesteps=6).test, 6, 200)
    saved = ql.load(out)
    assert simulate(saved, x).accuracy(y) == ft["accuracy_after"] == ft["test_accuracy_per_epoch"][-1]
    assert saved.meta["finetune"]["epochs"] == 2
    for a, b in zip(coarse.layers, saved.layers):
        assert (a.neuron.vth, a.neuron.du, a.neuron.dv, a.synapse.weight_exp) == \
            (b.neuron.vth, b.neuron.du, b.neuron.dv, b.synapse.weight_exp)


def test_finetune_a_checkpoint_writes_a_checkpoint(tmp_path):
    ql.save(ql.train(epochs=1, hidden=[16], timesteps=4), tmp_path / "m.pt")
    tuned = ql.finetune(tmp_path / "m.pt", epochs=1, train_samples=200, samples=60, out=tmp_path / "t.pt")
    back = ql.load(tmp_path / "t.pt")
    assert back.config == tuned.config and back.meta["finetune"]["epochs"] == 1
    assert ql.verify(back, samples=20, backends=("torch", "reference")).equivalent
    with pytest.raises(QsnnError, match="also an input"):
        ql.finetune(tmp_path / "m.pt", epochs=1, out=tmp_path / "m.pt")


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "qsnn_lava.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    return p.returncode, p.stdout, p.stderr


def test_cli_finetune_ir_and_its_refusals(coarse, tmp_path):
    ql.save(coarse, tmp_path / "in.h5")
    code, out, err = cli("finetune", tmp_path / "in.h5", "-o", tmp_path / "out.h5", "--epochs", 1,
                         "--train-samples", 200, "--samples", 50, "--json", tmp_path / "ft.json", "-q")
    assert code == 0, err
    ft = json.loads((tmp_path / "ft.json").read_text())
    assert f"{100 * ft['accuracy_after']:.2f} % after" in out and ql.load(tmp_path / "out.h5").meta["finetune"] == ft
    one_error_line(*cli("finetune", tmp_path / "in.h5", "-o", tmp_path / "in.h5", "-q")[::2], "also an input")
    small = Network((3,), [Layer("o", Dense([[1, 2, 3]]), LIF(1, vth=1, du=4095, dv=0))], 4)
    ql.save(small, tmp_path / "small.h5")
    code, _, err = cli("finetune", tmp_path / "small.h5", "-o", tmp_path / "x.h5", "-q")
    one_error_line(code, err, "64 inputs", "takes 3")
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(QsnnError, match="lr = -1.0 must be a finite number > 0"):
        ql.finetune(coarse, lr=-1.0)


@pytest.mark.lava
def test_a_finetuned_network_runs_identically_on_lava(rng):
    net = conv_net(rng)
    net = Network(net.input_shape, net.layers[:3] + [Layer("out", Dense(rng.integers(-40, 41, (5, 36))),
                                                             LIF(5, vth=30, du=2000, dv=500))], net.timesteps)
    model = IRModel(net)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 3)
    tuned = model.to_ir()
    x = random_spikes(rng, tuned, 6)
    ref, lava = ql.simulate(tuned, x), ql.simulate(tuned, x, backend="lava")
    assert mismatches(ref.spikes, lava.spikes) == 0 and sum(int(s.sum()) for s in ref.spikes) > 0
    assert mismatches(evaluate(model, x).spikes, ref.spikes) == 0


def test_irmodel_examples_run():
    import doctest

    import qsnn_lava.irmodel as M

    result = doctest.testmod(M, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
