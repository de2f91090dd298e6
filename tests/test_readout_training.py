"""A readout output layer in training (config ``readout``): the output layer's voltage summed over T is the
class, trained on the exact dynamics and deployed as an ``ir.Readout`` with the same integers."""
import numpy as np
import pytest
import torch

import qsnn_lava as ql
from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.deployment.verify import compare
from qsnn_lava.ir import Readout
from qsnn_lava.models import build_model, make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate


@pytest.fixture(scope="module")
def trained():
    model = ql.train(dataset="digits", epochs=3, hidden=[32], timesteps=4, seed=2, readout=True, lr=1e-2)
    x, y = ql.encode(ql.load_dataset("digits", timesteps=4).test, timesteps=4)
    return model, x, y


def test_readout_model_deploys_its_voltages_exactly(trained):
    model, x, y = trained
    assert model.config["readout"] and model.history["test_acc"][-1] > 0.6
    net = model_to_ir(model)
    assert isinstance(net.layers[-1].neuron, Readout)
    rec, ref = evaluate(model, x), simulate(net, x)
    out = net.layers[-1].name
    assert np.array_equal(rec.voltages[out], ref.voltages[out]) and not rec.spikes[-1].any()
    assert compare(rec, ref)["mismatches"] == 0 and rec.accuracy(y) == ref.accuracy(y)
    assert rec.accuracy(y) == pytest.approx(model.history["test_acc"][-1])  # what training measured


@pytest.mark.lava
def test_readout_model_matches_lava(trained, tmp_path):
    model, _, _ = trained
    ql.save(model, tmp_path / "r.pt")
    res = ql.verify(tmp_path / "r.pt", samples=20)
    assert res.equivalent and res.report["spike_mismatches"] == {"trained_vs_reference": 0, "reference_vs_lava": 0}


def test_readout_logits_scale_the_voltage_sum_and_conv_nets_train_with_one():
    cfg = make_config(arch="vgg", sizes=[64, 10], input_shape=[1, 8, 8], channels=[4, 8], timesteps=3,
                      input="direct", input_bits=8, readout=True)
    model = build_model(cfg).train()
    outs = model(torch.randint(0, 256, (1, 6, 64)).expand(3, -1, -1).float())
    v = outs[-1]
    assert v.shape == (3, 6, 10) and v.requires_grad
    thr = model.layers[-1].neuron.vth0 << 6
    assert torch.equal(model.logits(v), v.sum(0) / thr)
    model.logits(v).sum().backward()
    assert model.layers[-1].synapse.weight.grad.abs().sum() > 0
    with pytest.raises(ql.QsnnError, match="readout"):
        make_config(readout="yes")
