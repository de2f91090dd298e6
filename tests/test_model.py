"""Trained = deployed: the torch model's eval forward equals the IR on the reference simulator."""
import numpy as np
import pytest
import torch

from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.deployment.verify import compare
from qsnn_lava.data import encoded, load_dataset, rate_encode
from qsnn_lava.errors import QsnnError
from qsnn_lava.models import build_model, make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train


def test_rate_encoding_is_deterministic_and_proportional():
    s = rate_encode(np.array([[0, 4, 8, 16]]), 16, 8)
    assert s.sum(0).tolist() == [[0, 2, 4, 8]]
    with pytest.raises(QsnnError):
        rate_encode(np.array([[17]]), 16, 8)


def test_train_forward_equals_eval_forward():
    torch.manual_seed(0)
    model = build_model(make_config(sizes=[64, 32, 10]))
    x = torch.from_numpy(encoded(load_dataset("digits").test, 8, 50)[0].astype(np.int64))
    model.train()
    with torch.no_grad():
        train_out = [s.to(torch.int64) for s in model(x)]
    model.eval()
    eval_out = model(x)
    for a, b in zip(train_out, eval_out):
        assert torch.equal(a, b)
    assert sum(int(s.sum()) for s in eval_out) > 0


def test_trained_model_matches_its_ir_on_reference():
    data = load_dataset("digits")
    model, hist = train(make_config(sizes=[64, 32, 10]), data, epochs=2, progress=False)
    net = model_to_ir(model)
    x, y = encoded(data.test, net.timesteps)
    rec_t, rec_r = evaluate(model, x), simulate(net, x)
    assert compare(rec_t, rec_r)["mismatches"] == 0
    assert rec_t.accuracy(y) == rec_r.accuracy(y) == pytest.approx(hist["test_acc"][-1])
    assert rec_t.accuracy(y) > 0.5  # two epochs already learn something


def test_8bit_uniform_levels_are_refused_for_loihi():
    model = build_model(make_config(sizes=[64, 8, 10], bits=8))
    with torch.no_grad():
        model.layers[0].synapse.weight[0, 0] = 1.0  # level 255: odd, needs 9 bits with mixed signs
        model.layers[0].synapse.weight[0, 1] = -1.0
    with pytest.raises(QsnnError, match="weight = -?255 is outside the Loihi 2 range"):
        model_to_ir(model)


def test_threshold_must_be_whole_weight_units():
    with pytest.raises(QsnnError, match="not a whole number"):
        build_model(make_config(theta=0.55))


def test_rescaw_uses_more_levels_and_deploys_exactly():
    """ReScaW spreads small weights over all 2^b levels (Eq. 8) and still converts to an exact IR."""
    from qsnn_lava.deployment.backends.lava import run as run_lava

    torch.manual_seed(0)
    uni = build_model(make_config(sizes=[64, 32, 10], quant="uniform"))
    torch.manual_seed(0)
    res = build_model(make_config(sizes=[64, 32, 10], quant="rescaw", theta=4.0))
    assert res.utilisation()["fc1"] == 1.0 > uni.utilisation()["fc1"]
    x = encoded(load_dataset("digits").test, 8, 20)[0]
    net = model_to_ir(res.eval())
    assert compare(evaluate(res, x), simulate(net, x))["mismatches"] == 0
    assert compare(simulate(net, x), run_lava(net, x))["mismatches"] == 0


def test_rescaw_refuses_one_bit():
    with pytest.raises(QsnnError, match="ReScaW needs at least 2 bits"):
        build_model(make_config(quant="rescaw", bits=1))


@pytest.mark.parametrize("quant,bits,levels", [("sigmoid", 1, {-1, 1}), ("ternary", 2, {-1, 0, 1}),
                                               ("sigmoid", 2, {-3, -1, 1, 3})])
def test_sigmoid_quantizer_levels_schedule_and_exact_deployment(tmp_path, quant, bits, levels):
    from qsnn_lava.converters.checkpoint import load_model
    from qsnn_lava.deployment.backends.lava import run as run_lava
    from qsnn_lava.io import save_checkpoint

    data = load_dataset("digits")
    cfg = make_config(sizes=[64, 24, 10], quant=quant, bits=bits, theta=4.0)
    model, _ = train(cfg, data, epochs=2, progress=False)
    q = model.layers[0].synapse.quantizer
    assert float(q.temperature) == 2.0  # (epoch + 1) * T0 after the second epoch
    w = model.layers[0].synapse.integer_weight()
    assert set(w.unique().tolist()) <= levels and len(w.unique()) >= 2
    save_checkpoint(tmp_path / "m.pt", cfg, model.state_dict())
    back, _ = load_model(tmp_path / "m.pt")  # beta and temperature travel in the state_dict
    assert torch.equal(back.layers[0].synapse.integer_weight(), w)
    x = encoded(data.test, 8, 15)[0]
    net = model_to_ir(back)
    assert compare(evaluate(back, x), simulate(net, x))["mismatches"] == 0
    assert compare(simulate(net, x), run_lava(net, x))["mismatches"] == 0


def test_ternary_needs_two_bits():
    with pytest.raises(QsnnError, match="ternary weights take 2 bits"):
        make_config(quant="ternary", bits=1)


def test_mfp_trains_in_parallel_and_deploys_exactly():
    """MFP: the parallel training relaxation tracks the exact integer neuron closely; the eval model
    (exact) is what deploys, with zero mismatches on Lava."""
    from qsnn_lava.deployment.backends.lava import run as run_lava

    data = load_dataset("digits")
    model, hist = train(make_config(sizes=[64, 32, 10], neuron="mfp"), data, epochs=2, progress=False)
    assert model.layers[0].neuron.du == 2047 and model.layers[0].neuron.dv == 4095
    x = encoded(data.test, 8, 40)[0]
    model.train()
    with torch.no_grad():
        relaxed = model(torch.from_numpy(x.astype(np.float64)))[0].to(torch.int64).numpy()
    exact = evaluate(model, x)
    agree = (relaxed == exact.spikes[0]).mean()
    assert agree > 0.97, agree
    net = model_to_ir(model)
    assert compare(exact, simulate(net, x))["mismatches"] == 0
    assert compare(simulate(net, x), run_lava(net, x))["mismatches"] == 0


@pytest.mark.lava
def test_first_and_last_layer_precision_is_configurable_and_deploys_exactly():
    """2-bit hidden layers with 6-bit first and last layers: per-layer bits reach the IR, and the
    network runs on Lava spike for spike (8-bit odd uniform levels would be refused by the IR check)."""
    from qsnn_lava.converters.checkpoint import model_to_ir
    from qsnn_lava.deployment.backends.lava import run as run_lava
    from qsnn_lava.deployment.verify import compare
    from qsnn_lava.data import encoded, load_dataset
    from qsnn_lava.reference import simulate
    from qsnn_lava.training import train

    data = load_dataset("digits")
    cfg = make_config(sizes=[64, 24, 16, 10], bits=2, first_bits=6, last_bits=6, timesteps=4)
    model, _ = train(cfg, data, epochs=2, progress=False)
    net = model_to_ir(model)
    assert [layer.weight_bits for layer in net.layers] == [6, 2, 6]
    assert int(abs(net.layers[0].synapse.weight).max()) > 3 >= int(abs(net.layers[1].synapse.weight).max())
    x, _ = encoded(data.test, 4, 30)
    assert compare(simulate(net, x), run_lava(net, x))["mismatches"] == 0
    with pytest.raises(QsnnError, match="first_bits"):
        make_config(first_bits=9)
    model8 = build_model(make_config(sizes=[64, 8, 10], first_bits=8))
    with torch.no_grad():
        model8.layers[0].synapse.weight[0, :2] = torch.tensor([1.0, -1.0])  # levels +-255: 9 bits mixed
    with pytest.raises(QsnnError, match="weight"):
        model_to_ir(model8.eval())


def test_a_config_saved_before_later_keys_existed_still_builds(tmp_path):
    """Checkpoints written before input_shape, channels, bn, mem_bits, widths, first/last bits and
    bias_exp_min existed load with those keys' defaults."""
    from qsnn_lava.converters.checkpoint import load_model
    from qsnn_lava.io import save_checkpoint
    from qsnn_lava.models import LATER_KEYS

    cfg = make_config(sizes=[64, 16, 10])
    model = build_model(cfg)
    old = {k: v for k, v in cfg.items() if k not in LATER_KEYS}
    save_checkpoint(tmp_path / "old.pt", old, model.state_dict())
    loaded, _ = load_model(tmp_path / "old.pt")
    assert loaded.config["mem_bits"] == 4 and loaded.config["widths"] is None
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
