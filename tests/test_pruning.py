"""SVS / SCA / random structured pruning: scores, a physically smaller network, exact deployment, the CLI."""
import json

import numpy as np
import pytest
import torch

from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.deployment.verify import compare
from qsnn_lava import pruning as P
from qsnn_lava.cli import main
from qsnn_lava.data import Dataset, encoded, load_dataset
from qsnn_lava.errors import QsnnError
from qsnn_lava.io import save_checkpoint
from qsnn_lava.models import build_model, make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _small(data, n):
    return Dataset(data.name, P.subset(data.train, np.arange(n)), data.test, data.n_in, data.n_classes, data.shape)


@pytest.fixture(scope="module")
def vgg(digits):
    cfg = make_config(arch="vgg", sizes=[64, 10], input_shape=digits.shape, channels=[6, 8], timesteps=4)
    model, _ = train(cfg, _small(digits, 480), epochs=2, progress=False)
    return model


@pytest.fixture(scope="module")
def mlp(digits):
    model, _ = train(make_config(sizes=[64, 32, 24, 10], timesteps=4), digits, epochs=3, progress=False)
    return model


# ---------------------------------------------------------------- scores
def test_svs_rank_of_constructed_maps():
    s = torch.zeros(2, 2, 3, 4, 4)  # [T, N, C, H, W]
    s[:, 0, 1, 2, 3] = 1  # channel 1, sample 0: one pixel -> rank 1
    s[0, :, 2] = torch.eye(4)  # channel 2: identity at t = 0 ...
    s[1, 1, 2] = torch.eye(4)  # ... and t = 1 for sample 1: mean is I/2 or I, rank 4 either way
    s[0, 1, 0, 0, :2] = 1  # channel 0, sample 1: rows (1,1,0,0) at t0, (0,0,1,1) at t1: rank 2
    s[1, 1, 0, 1, 2:] = 1
    assert P.svs_map_score(s).tolist() == [1.0, 0.5, 4.0]  # mean over the 2 samples


def test_svs_dense_rank_over_groups_of_t_samples():
    T, n = 3, 2
    s = torch.zeros(T, 7, n)  # 7 samples: two groups of 3 (the 7th is left out)
    s[:, :3, 0] = torch.eye(3)  # neuron 0, group 0: three independent spike trains -> rank 3
    s[:, 3:6, 0] = 1  # group 1: the same train on every sample -> rank 1
    s[0, :, 1] = 1  # neuron 1: fires at t = 0 only, on every sample -> rank 1
    assert P.svs_dense_score(s).tolist() == [2.0, 1.0]


def test_scores_shapes_stability_and_groups(vgg, mlp, digits):
    batches = P.scoring_batches(digits, 4, 3, 32)
    assert [b.shape for b in batches] == [(4, 32, 64)] * 3
    for model, widths in ((vgg, [6, 8]), (mlp, [32, 24])):
        for crit in P.CRITERIA:
            sc = P.score_channels(model, batches, crit, seed=1)
            assert [s["per_batch"].shape for s in sc] == [(3, w) for w in widths]
            assert all(np.allclose(s["score"], s["per_batch"].mean(0)) for s in sc)
            assert all(0 <= P.stability(s["per_batch"]) <= 1 + 1e-12 for s in sc)
    rec = P.record(vgg, batches[0])  # the recorded spikes are the model's own
    assert all(torch.equal(rec[layer.name][0].flatten(2), out)
               for layer, out in zip(vgg.layers, vgg.eval()(torch.from_numpy(batches[0].astype(np.int64)))))
    res = build_model(make_config(arch="resnet", sizes=[64, 10], input_shape=(1, 8, 8), channels=[4, 6]))
    assert P.prunable_groups(res) == [["stem", "res1b"], ["res1a"], ["down", "res2b"], ["res2a"]]
    assert P.keep_indices(np.array([1.0, 3.0, 1.0, 2.0]), 3).tolist() == [0, 1, 3]  # tie: index 2 goes


def test_synops_are_exact(vgg, mlp, digits):
    """Conv SynOps equal the dense-matrix count of the same conv; dense SynOps equal deploy.energy's."""
    from qsnn_lava.deployment.energy import count_ops
    from qsnn_lava.metrics import synops_per_layer

    x, _ = encoded(digits.test, 4, 10)
    net = model_to_ir(mlp)
    rec = simulate(net, x)
    assert synops_per_layer(net, x, rec) == [l["synops_effective"] for l in count_ops(net, x, rec)["layers"]]
    net = model_to_ir(vgg)
    rec = simulate(net, x)
    got = synops_per_layer(net, x, rec)
    src = x
    for i, layer in enumerate(net.layers):
        syn = layer.synapse
        if syn.type == "conv":  # the conv as a dense matrix: column j = the response to a unit input j
            basis = np.eye(syn.n_in).reshape(syn.n_in, *syn.in_shape)
            w = torch.nn.functional.conv2d(torch.from_numpy(basis), torch.from_numpy(syn.weight.astype(np.float64)),
                                           stride=syn.stride, padding=syn.padding, groups=syn.groups)
            dense = w.reshape(syn.n_in, -1).T.numpy()
        else:
            dense = syn.weight
        want = src.sum((0, 1), dtype=np.int64) @ (dense != 0).sum(0) / x.shape[1]
        assert got[i] == pytest.approx(want, abs=1e-9), layer.name
        src = rec.spikes[i]


# ---------------------------------------------------------------- pruning
def test_scoring_batches_use_the_networks_input_code(digits):
    """A direct-input network is scored on the direct code it deploys with, not on rate-coded spikes."""
    rate = P.scoring_batches(digits, 4, 1, 16)[0]
    direct = P.scoring_batches(digits, 4, 1, 16, input_bits=4)[0]
    assert rate.max() == 1 and 1 < direct.max() <= 15 and direct.shape == rate.shape
    assert (direct == direct[:1]).all()  # the same intensity every step


def test_pruning_shrinks_vgg_and_mlp(vgg, mlp, digits):
    batches = P.scoring_batches(digits, 4, 2, 32)
    x, _ = encoded(digits.test, 4, 16)
    pr, groups = P.prune_model(vgg, P.score_channels(vgg, batches, "svs"), [0.5, 0.25])
    assert pr.config["widths"] == {"conv1": 3, "conv2": 6} and pr.config["channels"] == [6, 8]
    assert [g["keep"] for g in groups] == [3, 6]
    a, b = model_to_ir(vgg), model_to_ir(pr)
    assert [l.neuron.n for l in a.layers] == [384, 96, 128, 32, 10]
    assert [l.neuron.n for l in b.layers] == [192, 48, 96, 24, 10]
    assert [l.synapse.weight.shape for l in b.layers if l.name != "pool1" and l.name != "pool2"] == \
        [(3, 1, 3, 3), (6, 3, 3, 3), (10, 24)]
    s0, s1 = P.summarize(model_to_ir(vgg, validate=False), x), P.summarize(model_to_ir(pr, validate=False), x)
    assert [l["params"] for l in s1["layers"]] == [27, 0, 162, 0, 240]  # 54*3/6, 432*(6*3)/(8*6), 320*6/8
    assert s1["total"]["size_bits"] == 4 * (27 + 162 + 240) < s0["total"]["size_bits"]
    assert s1["total"]["ir_weights"] < s0["total"]["ir_weights"]
    # the kept channels keep their latent weights and BatchNorm statistics, inputs sliced to match
    k1, k2 = groups[0]["kept"], groups[1]["kept"]
    w_old, w_new = vgg.layers[2].synapse.weight, pr.layers[2].synapse.weight
    assert torch.equal(w_new, w_old[k2][:, k1])
    assert torch.equal(pr.layers[0].synapse.bn.running_var, vgg.layers[0].synapse.bn.running_var[k1])
    cols = (torch.as_tensor(k2)[:, None] * 4 + torch.arange(4)).flatten()
    assert torch.equal(pr.layers[4].synapse.weight, vgg.layers[4].synapse.weight[:, cols])

    pm, groups = P.prune_model(mlp, P.score_channels(mlp, batches, "sca"), 0.5)
    assert pm.config["sizes"] == [64, 16, 12, 10] and pm.config.get("widths") is None
    assert [l.synapse.weight.shape for l in model_to_ir(pm).layers] == [(16, 64), (12, 16), (10, 12)]
    s = P.summarize(model_to_ir(pm, validate=False), x)
    assert [l["params"] for l in s["layers"]] == [1024, 192, 120]
    assert s["total"]["neurons"] == 38


def test_plan_errors(vgg, mlp):
    for ratios, msg in (([], "empty"), (1.0, r"outside \[0, 1\)"), ([-0.1, 0.1], "outside"), ([0.5], "1 ratios"),
                        ([0.2, 0.3, 0.4], "3 ratios"), ([0.95, 0.1], "remove all 6 channels of layer conv1"),
                        (0.95, "remove all 6"), (["x", 0.1], "not a number")):
        with pytest.raises(QsnnError, match=msg):
            P.plan(vgg, ratios)
    tiny = build_model(make_config(sizes=[64, 10]))
    with pytest.raises(QsnnError, match="no prunable layer"):
        P.plan(tiny, 0.5)
    with pytest.raises(QsnnError, match="tied by the residual"):
        make_config(arch="resnet", sizes=[64, 10], input_shape=(1, 8, 8), widths={"stem": 3})
    with pytest.raises(QsnnError, match="unknown layer"):
        make_config(arch="vgg", sizes=[64, 10], input_shape=(1, 8, 8), widths={"fc": 3})


def test_resnet_tied_groups_prune_together():
    cfg = make_config(arch="resnet", sizes=[64, 10], input_shape=(1, 8, 8), channels=[4, 6])
    model = build_model(cfg).eval()
    scores = [{"layers": g, "score": np.arange(float(P._width(model, g[0])))} for g in P.prunable_groups(model)]
    pr, _ = P.prune_model(model, scores, [0.5, 0.25, 0.5, 0.0])
    assert pr.config["widths"] == {"stem": 2, "res1b": 2, "res1a": 3, "down": 3, "res2b": 3, "res2a": 6}
    net = model_to_ir(pr)
    assert net.layers[2].skips[0].synapse.weight.shape == (2, 1, 1, 1)
    x = (np.random.default_rng(0).random((cfg["timesteps"], 4, 64)) < 0.5).astype(np.uint8)
    assert compare(evaluate(pr, x), simulate(net, x))["mismatches"] == 0


@pytest.mark.lava
def test_pruned_finetuned_vgg_deploys_exactly(vgg, digits):
    from qsnn_lava.deployment.backends.lava import run as run_lava

    batches = P.scoring_batches(digits, 4, 2, 32)
    pr, _ = P.prune_model(vgg, P.score_channels(vgg, batches, "svs"), 0.5)
    ft, hist = P.finetune(pr, _small(digits, 320), 1, 1e-3, 64, 0)
    assert ft.config == pr.config and len(hist["test_acc"]) == 1
    net = model_to_ir(ft)
    x, _ = encoded(digits.test, 4, 12)
    torch_rec, ref = evaluate(ft, x), simulate(net, x)
    assert all(int(s.sum()) > 0 for s in ref.spikes[:-1])
    assert compare(torch_rec, ref)["mismatches"] == 0
    c = compare(ref, run_lava(net, x))
    assert c["mismatches"] == 0, c["first_divergence"]


# ---------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def ckpts(mlp, vgg, tmp_path_factory):
    d = tmp_path_factory.mktemp("prune")
    save_checkpoint(d / "mlp.pt", mlp.config, mlp.state_dict(), {"dataset": "digits", "epochs": 3})
    save_checkpoint(d / "vgg.pt", vgg.config, vgg.state_dict(), {"dataset": "digits", "epochs": 2})
    tiny = build_model(make_config(sizes=[64, 10]))
    save_checkpoint(d / "tiny.pt", tiny.config, tiny.state_dict(), {"dataset": "digits"})
    (d / "junk.pt").write_bytes(b"not a checkpoint")
    return d


def test_cli_prune_mlp(ckpts, capsys):
    out = ckpts / "p.pt"
    code = main(["prune", str(ckpts / "mlp.pt"), "--criterion", "svs", "--ratios", "0.5,0.25",
                 "--finetune-epochs", "1", "--out", str(out), "--json", str(ckpts / "p.json"), "-q"])
    text = capsys.readouterr().out
    assert code == 0
    assert "fc1" in text and "32 -> 16" in text and "24 -> 18" in text
    rep = json.loads((ckpts / "p.json").read_text())
    assert [(g["before"], g["after"]) for g in rep["groups"]] == [(32, 16), (24, 18)]
    assert rep["summary"]["after"]["total"]["params"] < rep["summary"]["before"]["total"]["params"]
    from qsnn_lava.converters.checkpoint import load_model
    model, ck = load_model(out)
    assert model.config["sizes"] == [64, 16, 18, 10]
    assert ck["meta"]["pruning"]["criterion"] == "svs"
    assert ck["meta"]["test_accuracy"] == pytest.approx(rep["accuracy"]["finetuned"])


@pytest.mark.parametrize("ckpt,extra,msg", [
    ("junk.pt", ["--ratio", "0.5"], "is not a qsnn-lava checkpoint"),
    ("missing.pt", ["--ratio", "0.5"], "not found"),
    ("tiny.pt", ["--ratio", "0.5"], "no prunable layer"),
    ("vgg.pt", ["--ratios", ","], "empty"),
    ("vgg.pt", ["--ratio", "1"], "outside [0, 1)"),
    ("vgg.pt", ["--ratio", "-0.2"], "outside [0, 1)"),
    ("vgg.pt", ["--ratios", "0.5"], "1 ratios given for 2"),
    ("vgg.pt", ["--ratios", "0.95,0.5"], "would remove all 6 channels of layer conv1"),
])
def test_cli_prune_errors_exit_2(ckpts, capsys, ckpt, extra, msg):
    out = ckpts / "bad.pt"
    code = main(["prune", str(ckpts / ckpt), "--out", str(out), "--finetune-epochs", "0", "-q", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
