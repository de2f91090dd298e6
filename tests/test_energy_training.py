"""The activity regulariser (issue #18): SynOps counted on the training forward equal the deployed network's
counts exactly, and a SynOps budget lowers the deployed SynOps while the network still deploys exactly."""
import numpy as np
import pytest
import torch

from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.data import encoded, load_dataset
from qsnn_lava.deployment.energy import count_ops
from qsnn_lava.deployment.verify import compare
from qsnn_lava.errors import QsnnError
from qsnn_lava.metrics import forward_synops, synops_per_layer
from qsnn_lava.models import build_model, make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import check_recipe, evaluate, synops_penalty, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _inputs(model, digits, n=16):
    return encoded(digits.test, int(model.config["timesteps"]), n, input_bits=model.input_bits)


def test_training_forward_synops_equal_the_reference(digits):
    """mlp (straight-through quantizer, no BatchNorm): the TRAINING forward's SynOps, with their gradient,
    equal the reference's counts of the deployed network on the same batch, layer by layer, exactly."""
    torch.manual_seed(0)
    model = build_model(make_config(sizes=[64, 24, 10], timesteps=3, theta=1.0))
    x, _ = _inputs(model, digits)
    model.train()
    outs = model(torch.from_numpy(x.astype(np.float64)))
    got = forward_synops(model, torch.from_numpy(x), outs)
    net = model_to_ir(model)
    want = synops_per_layer(net, x, simulate(net, x))
    assert [float(g.detach()) for g in got] == [w * x.shape[1] for w in want] and min(want) > 0
    term, s = synops_penalty(model, torch.from_numpy(x), outs, budget=s_budget(want, x), weight=1.0)
    assert s == sum(want) and float(term.detach()) == pytest.approx(sum(want) / s_budget(want, x) - 1.0)
    term.backward()  # the hidden layer's spikes fan out into fc2: its weights get the gradient
    assert float(model.layers[0].synapse.weight.grad.abs().sum()) > 0


def s_budget(want, x):
    return sum(want) / 2  # half of what the batch spends: an active hinge


@pytest.mark.parametrize("arch,cfg", [("vgg", {}), ("resnet", {}), ("vgg", {"input": "direct", "input_bits": 4})])
def test_eval_forward_synops_equal_count_ops(digits, arch, cfg):
    """Conv nets with folded BatchNorm, pooling, identity skips and direct (graded) input: the deployed
    (eval) forward's counts equal ``count_ops``'s synops_effective per layer, exactly."""
    torch.manual_seed(1)
    model = build_model(make_config(arch=arch, sizes=[64, 10], input_shape=digits.shape, channels=[4, 8],
                                    timesteps=2, **cfg)).eval()
    x, _ = _inputs(model, digits, 8)
    with torch.no_grad():
        got = forward_synops(model, torch.from_numpy(x), model(torch.from_numpy(x.astype(np.int64))))
    net = model_to_ir(model)
    counts = count_ops(net, x, simulate(net, x))
    assert [float(g) for g in got] == [layer["synops_effective"] * 8 for layer in counts["layers"]]
    assert counts["total"]["synops_effective"] > 0


def test_recipe_checks_the_budget():
    assert check_recipe({"synops_budget": 1e4})["synops_weight"] == 1.0
    assert check_recipe({"synops_weight": 0.5})["synops_budget"] == 0.0
    with pytest.raises(QsnnError, match="synops_budget"):
        check_recipe({"synops_budget": -1})


def _deployed_synops(model, digits):
    net = model_to_ir(model)
    x, y = encoded(digits.test, net.timesteps)
    ref = simulate(net, x)
    assert compare(evaluate(model, x), ref)["mismatches"] == 0  # trained = deployed, whole test split
    return count_ops(net, x, ref)["total"]["synops_effective"], ref.accuracy(y)


@pytest.fixture(scope="module")
def budget_pair(digits):
    """The same tiny mlp, same seed, trained without and with a SynOps budget of 3/4 of the first's SynOps.
    The input layer's SynOps (input spikes x fan-out, about 55 % here) are fixed by the input code: the budget
    must leave room for them, the spikes control the rest."""
    cfg = make_config(sizes=[64, 48, 48, 10], timesteps=4, theta=1.0)  # hidden-to-hidden SynOps
    free, _ = train(cfg, digits, epochs=2, progress=False, seed=3)
    s_free, acc_free = _deployed_synops(free, digits)
    budgeted, hist = train(cfg, digits, epochs=2, progress=False, seed=3,
                           recipe={"synops_budget": 0.75 * s_free})
    return s_free, acc_free, budgeted, hist


def test_budget_lowers_deployed_synops(digits, budget_pair):
    s_free, acc_free, budgeted, hist = budget_pair
    s_budget, acc = _deployed_synops(budgeted, digits)
    assert s_budget < 0.85 * s_free, (s_budget, s_free)
    assert len(hist["synops"]) == 2 and hist["synops"][-1] < s_free
    assert acc > 0.6 and acc_free > 0.6  # still a classifier (chance is 0.1)


@pytest.mark.lava
def test_budgeted_network_runs_on_lava(digits, budget_pair):
    from qsnn_lava.deployment.backends.lava import run as run_lava

    net = model_to_ir(budget_pair[2])
    x, _ = encoded(digits.test, net.timesteps, 6)
    ref = simulate(net, x)
    assert compare(ref, run_lava(net, x))["mismatches"] == 0
    assert sum(int(s.sum()) for s in ref.spikes) > 0
