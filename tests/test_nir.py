"""NIR in and out (converters/nir.py): graphs built with the real ``nir`` package, imported into the IR,
run on the reference and on real Lava (0 mismatches), float-vs-integer reports, bit-exact round trips of
our exports, and one-line refusals of what the IR cannot hold."""
import json

import h5py
import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

import qsnn_lava as ql  # noqa: E402
from qsnn_lava.converters import nir as qnir  # noqa: E402
from qsnn_lava.errors import QsnnError  # noqa: E402
from qsnn_lava.ir import INPUT, LIF, Conv, Dense, Layer, Network, Skip, sum_pool  # noqa: E402

DT = 1e-3


def full(shape, value):
    return np.full(shape, float(value))


def lif(shape, tau=0.01, thr=1.0, r=None, v_leak=0.0, **kw):
    """A LIF whose input gain is 1 under forward Euler at DT (r = tau / dt, snnTorch's convention)."""
    return nir.LIF(tau=full(shape, tau), r=full(shape, tau / DT if r is None else r), v_leak=full(shape, v_leak),
                   v_threshold=full(shape, thr), **kw)


def cuba(shape, tau_syn=0.004, tau_mem=0.01, thr=1.0, v_leak=0.0):
    return nir.CubaLIF(tau_syn=full(shape, tau_syn), tau_mem=full(shape, tau_mem), r=full(shape, tau_mem / DT),
                       v_leak=full(shape, v_leak), v_threshold=full(shape, thr), w_in=full(shape, tau_syn / DT))


def if_(shape, thr=1.0):
    return nir.IF(r=full(shape, 1 / DT), v_threshold=full(shape, thr))


def graph(nodes: dict, edges: list, **kw):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, **kw)


def chain(*pairs):
    """A sequential graph from (name, node) pairs, Input first and Output last."""
    names = [n for n, _ in pairs]
    return graph(dict(pairs), list(zip(names[:-1], names[1:])))


def affine(rng, n_out, n_in, scale=0.5, bias=0.0):
    return nir.Affine(weight=rng.normal(0, scale, (n_out, n_in)), bias=full(n_out, bias))


def spikes(rng, timesteps, n, n_in, rate=0.3):
    return (rng.random((timesteps, n, n_in)) < rate).astype(np.uint8)


def same_ir(a: Network, b: Network) -> None:
    """Every field and array of two IR networks is identical."""
    assert (a.input_shape, a.timesteps, a.meta) == (b.input_shape, b.timesteps, b.meta)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert (la.name, la.weight_bits, len(la.skips)) == (lb.name, lb.weight_bits, len(lb.skips))
        for sa, sb in [(la.synapse, lb.synapse)] + [(x.synapse, y.synapse) for x, y in zip(la.skips, lb.skips)]:
            assert type(sa) is type(sb) and sa.weight.dtype == sb.weight.dtype == np.int64
            assert np.array_equal(sa.weight, sb.weight) and sa.weight_exp == sb.weight_exp
            if isinstance(sa, Conv):
                fields = ("in_shape", "stride", "padding", "groups")
                assert [getattr(sa, f) for f in fields] == [getattr(sb, f) for f in fields]
        assert [k.source for k in la.skips] == [k.source for k in lb.skips]
        ra, rb = la.recurrent, lb.recurrent
        assert (ra is None) == (rb is None)
        if ra is not None:
            assert np.array_equal(ra.weight, rb.weight) and ra.weight_exp == rb.weight_exp
        na, nb = la.neuron, lb.neuron
        assert type(na) is type(nb)
        assert (na.n, na.vth, na.du, na.dv, na.bias_exp) == (nb.n, nb.vth, nb.du, nb.dv, nb.bias_exp)
        assert np.array_equal(na.bias_mant, nb.bias_mant)


def same_spikes(a: Network, b: Network, x) -> None:
    ra, rb = ql.simulate(a, x), ql.simulate(b, x)
    assert all(np.array_equal(p, q) for p, q in zip(ra.spikes, rb.spikes))


def reference_equals_lava(net: Network, x) -> None:
    """Reference == real Lava through the public API, with every layer spiking (a silent one proves nothing)."""
    ref, lava = ql.simulate(net, x), ql.simulate(net, x, backend="lava")
    assert all(int(s.sum()) > 0 for s in ref.spikes), [int(s.sum()) for s in ref.spikes]
    mismatches = sum(int((p != q).sum()) for p, q in zip(ref.spikes, lava.spikes))
    assert mismatches == 0


# ------------------------------------------------------------------------------------------ graphs
def mlp_graph(rng, n_in=20, hidden=16, n_out=6):
    """Input -> Affine (bias) -> LIF (v_leak, per-neuron thresholds) -> Linear -> CubaLIF -> Output."""
    thr = rng.uniform(0.8, 1.2, hidden)
    return chain(("input", nir.Input(np.array([n_in]))),
                 ("fc1", affine(rng, hidden, n_in, 0.6, bias=0.05)),
                 ("lif1", nir.LIF(tau=full(hidden, 0.02), r=full(hidden, 20.0), v_leak=full(hidden, 0.1),
                                  v_threshold=thr)),
                 ("fc2", nir.Linear(weight=rng.normal(0, 0.9, (n_out, hidden)))),
                 ("cuba", cuba(n_out, thr=0.8)),
                 ("output", nir.Output(np.array([n_out]))))


def conv_graph(rng):
    """(2, 8, 8) -> Conv2d 'same' -> CubaLIF -> SumPool2d 2 -> Conv2d (groups 2, pad 1; the pool fuses into
    it) -> LIF -> AvgPool2d 2 -> Flatten -> Scale -> Affine -> IF -> Output."""
    c1 = nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.6, (4, 2, 3, 3)), stride=1, padding="same",
                    dilation=1, groups=1, bias=full(4, 0.0))
    c2 = nir.Conv2d(input_shape=None, weight=rng.normal(0.05, 0.35, (4, 2, 3, 3)), stride=1, padding=1, dilation=1,
                    groups=2, bias=full(4, 0.0))
    two, none = np.array([2, 2]), np.array([0, 0])
    return chain(("input", nir.Input(np.array([2, 8, 8]))), ("conv1", c1), ("cuba1", cuba((4, 8, 8), thr=0.6)),
                 ("pool1", nir.SumPool2d(kernel_size=two, stride=two, padding=none)),
                 ("conv2", c2), ("lif2", lif((4, 4, 4), thr=0.5)),
                 ("pool2", nir.AvgPool2d(kernel_size=two, stride=two, padding=none)),
                 ("flat", nir.Flatten(input_type={"input": np.array([4, 2, 2])}, start_dim=0)),
                 ("scale", nir.Scale(scale=rng.uniform(1.0, 2.0, 16))),
                 ("fc", affine(rng, 5, 16, 0.8, bias=0.0)), ("if", if_(5, thr=1.0)),
                 ("output", nir.Output(np.array([5]))))


def branch_graph(rng):
    """Conv1d (dilation 2) -> LIF 'a' -> Affine -> LIF 'b'; 'a' and 'b' both feed 'c' (a merge: 'a' becomes a
    skip); 'c' feeds a nested subgraph Affine -> LI -> IF (the LI is the IF's synaptic current)."""
    c1 = nir.Conv1d(input_shape=16, weight=rng.normal(0.1, 0.6, (3, 2, 3)), stride=1, padding=2, dilation=2,
                    groups=1, bias=full(3, 0.0))
    sub = graph({"in": nir.Input(np.array([8])), "fc": affine(rng, 4, 8, 1.0),
                 "li": nir.LI(tau=full(4, 0.004), r=full(4, 4.0), v_leak=full(4, 0.0)), "spk": if_(4, thr=0.8),
                 "out": nir.Output(np.array([4]))},
                [("in", "fc"), ("fc", "li"), ("li", "spk"), ("spk", "out")])
    nodes = {"input": nir.Input(np.array([2, 16])), "conv": c1, "a": lif((3, 16), thr=0.7),
             "fa": nir.Flatten(input_type={"input": np.array([3, 16])}, start_dim=0),
             "ab": affine(rng, 10, 48, 0.5), "b": lif(10, thr=0.7),
             "bc": affine(rng, 8, 10, 0.7), "ac": affine(rng, 8, 48, 0.3), "c": lif(8, thr=0.7),
             "sub": sub, "output": nir.Output(np.array([4]))}
    edges = [("input", "conv"), ("conv", "a"), ("a", "fa"), ("fa", "ab"), ("ab", "b"), ("b", "bc"), ("bc", "c"),
             ("fa", "ac"), ("ac", "c"), ("c", "sub"), ("sub", "output")]
    return graph(nodes, edges)


def rnn_graph(rng, n_in=12, hidden=10, n_out=5):
    """NIR's recurrent pattern twice: Input -> Affine -> LIF 'rnn' with an Affine from 'rnn' back to itself
    (the Braille RNN's form), then Linear -> CubaLIF 'out' with a Linear self-loop."""
    nodes = {"input": nir.Input(np.array([n_in])), "fc_in": affine(rng, hidden, n_in, 0.7),
             "rnn": lif(hidden, thr=1.0), "w_rec": affine(rng, hidden, hidden, 0.4),
             "fc_out": nir.Linear(weight=rng.normal(0, 0.8, (n_out, hidden))), "out": cuba(n_out, thr=0.6),
             "out_rec": nir.Linear(weight=rng.normal(-0.1, 0.5, (n_out, n_out))),
             "output": nir.Output(np.array([n_out]))}
    edges = [("input", "fc_in"), ("fc_in", "rnn"), ("rnn", "w_rec"), ("w_rec", "rnn"), ("rnn", "fc_out"),
             ("fc_out", "out"), ("out", "out_rec"), ("out_rec", "out"), ("out", "output")]
    return graph(nodes, edges)


def readout_graph(rng, kind: str):
    """Input -> Affine -> LIF (with a recurrent Affine) -> Affine -> a non-spiking readout (LI, CubaLI or I)
    -> Output."""
    n = 4
    ro = {"LI": nir.LI(tau=full(n, 0.005), r=full(n, 5.0), v_leak=full(n, 0.1)),
          "CubaLI": nir.CubaLI(tau_syn=full(n, 0.004), tau_mem=full(n, 0.01), r=full(n, 10.0), v_leak=full(n, 0.0),
                               w_in=full(n, 4.0)),
          "I": nir.I(r=full(n, 1 / DT))}[kind]
    nodes = {"input": nir.Input(np.array([10])), "fc": affine(rng, 8, 10, 0.7), "h": lif(8, thr=1.0),
             "rec": affine(rng, 8, 8, 0.3), "fo": affine(rng, n, 8, 0.6, bias=0.05 if kind == "I" else 0.0),
             "ro": ro, "output": nir.Output(np.array([n]))}
    edges = [("input", "fc"), ("fc", "h"), ("h", "rec"), ("rec", "h"), ("h", "fo"), ("fo", "ro"), ("ro", "output")]
    return graph(nodes, edges)


def recurrent_net(rng, timesteps=6):
    """A recurrent IR: a conv layer, then a dense LIF layer and a current-only (LI -> IF) readout, each feeding
    itself back (a recurrent synapse on the conv map itself cannot be exported: NIR has no reshape)."""
    conv = Conv(rng.integers(-6, 7, (2, 1, 3, 3)), (1, 5, 5), padding=1)
    n = conv.n_out
    layers = [Layer("c", conv, LIF(n, vth=8, du=4095, dv=1024, bias_mant=rng.integers(-3, 6, n))),
              Layer("d", Dense(rng.integers(-20, 21, (8, n)), weight_exp=-1), LIF(8, vth=20, du=700, dv=300),
                    recurrent=Dense(rng.integers(-30, 31, (8, 8)), weight_exp=1)),
              Layer("o", Dense(rng.integers(-30, 40, (4, 8))), LIF(4, vth=30, du=500, dv=0),
                    recurrent=Dense(rng.integers(-60, 61, (4, 4))))]
    return Network((1, 5, 5), layers, timesteps, meta={"kind": "recurrent"}).validate()


@pytest.fixture(scope="module")
def digits_net():
    model = ql.train(epochs=1, hidden=[16], timesteps=4)
    return ql.convert(model)


def conv_pool_net(rng, timesteps=4):
    c1 = Conv(rng.integers(-7, 8, (4, 2, 3, 3)), (2, 8, 8), padding=1)
    pool = sum_pool(c1.out_shape, 2)
    c2 = Conv(rng.integers(-7, 8, (6, 2, 3, 3)), pool.out_shape, stride=2, padding=1, groups=2)
    fc = Dense(rng.integers(-9, 10, (5, c2.n_out)), weight_exp=-1)
    bias = rng.integers(-5, 9, c1.n_out)
    layers = [Layer("conv1", c1, LIF(c1.n_out, vth=9, du=1000, dv=300, bias_mant=bias, bias_exp=1)),
              Layer("pool", pool, LIF(pool.n_out, vth=0, du=4095, dv=0)),
              Layer("conv2", c2, LIF(c2.n_out, vth=6, du=4095, dv=700)),
              Layer("fc", fc, LIF(5, vth=4, du=200, dv=0))]
    return Network((2, 8, 8), layers, timesteps, meta={"kind": "conv"}).validate()


def residual_net(rng, timesteps=5):
    shape = (3, 6, 6)
    c = [Conv(rng.integers(-6, 7, (3, 3, 3, 3)), shape, padding=1) for _ in range(3)]
    ident = Conv(np.full((3, 1, 1, 1), 5), shape, groups=3)
    layers = [Layer("c1", c[0], LIF(108, vth=8, du=4095, dv=1024, bias_mant=rng.integers(-4, 8, 108))),
              Layer("c2", c[1], LIF(108, vth=8, du=3000, dv=512)),
              Layer("c3", c[2], LIF(108, vth=9, du=4095, dv=2048), skips=[Skip("c1", ident)]),
              Layer("fc", Dense(rng.integers(-5, 6, (4, 108)), weight_exp=1), LIF(4, vth=20, du=4095, dv=100),
                    skips=[Skip(INPUT, Dense(rng.integers(-3, 4, (4, 108))))])]
    return Network(shape, layers, timesteps).validate()


# ------------------------------------------------------------------------------------------ import
def test_mlp_integers_follow_the_documented_formulas():
    rng = np.random.default_rng(0)
    g = mlp_graph(rng)
    net, rep = qnir.import_nir(g, dt=DT, timesteps=12)
    l1, l2 = net.layers
    assert [l.name for l in net.layers] == ["lif1", "cuba"] and not rep["exact"]
    assert (l1.neuron.du, l1.neuron.dv) == (4095, round(4096 * DT / 0.02))  # LIF: no current memory
    assert (l2.neuron.du, l2.neuron.dv) == (round(4096 * DT / 0.004) - 1, round(4096 * DT / 0.01))
    assert int(np.abs(l1.synapse.weight).max()) == 127 and int(np.abs(l2.synapse.weight).max()) == 127
    # a weight mantissa is 64 * 2^e internal units; the threshold vth << 6: their ratio is the float ratio
    w = g.nodes["fc1"].weight * (0.02 / DT * DT / 0.02)  # gain k r = 1 for r = 20, tau = 0.02
    thr = g.nodes["lif1"].v_threshold
    ratio_int = l1.synapse.weight * 2.0 ** l1.synapse.weight_exp / l1.neuron.vth
    ratio_float = w * (thr.max() / thr)[:, None] / thr.max()
    assert np.abs(ratio_int - ratio_float).max() <= 0.6 / l1.neuron.vth * 2.0 ** l1.synapse.weight_exp + 1e-3
    # v_leak and the Affine bias are one per-step bias into v: k (v_leak + r b) = 0.05 (0.1 + 20 * 0.05)
    bias_v = l1.neuron.bias_mant * 2.0 ** l1.neuron.bias_exp / 64 / l1.neuron.vth
    assert np.allclose(bias_v, 0.05 * (0.1 + 20 * 0.05) * thr.max() / thr / thr.max(), rtol=0.01)
    e = rep["layers"]["lif1"]
    assert e["weight"]["max_rel"] <= 0.5 / 127 + 1e-9 and e["threshold"]["max_rel"] < 1e-3
    assert e["dv"]["max_abs"] <= 0.5 / 4096 and rep["layers"]["cuba"]["du"]["max_abs"] <= 0.5 / 4096
    # measured on 32 random samples: event agreement 0.987 (lif1) and 0.987 (cuba; 0.994 local)
    agree = rep["agreement"]["layers"]
    assert agree["lif1"]["event_agreement"] >= 0.95 and agree["cuba"]["event_agreement"] >= 0.95
    assert all(a["float_spikes"] > 50 for a in agree.values())
    assert "lif1" in qnir.format_report(rep) and json.loads(json.dumps(rep)) == rep


def test_exponential_step_and_scalar_parameters():
    """method="exp": k = 1 - exp(-dt / tau), also for dt > tau (where Euler refuses); scalars broadcast."""
    rng = np.random.default_rng(12)
    g = nir.NIRGraph.from_list(affine(rng, 5, 7), nir.LIF(tau=np.array(DT / 2), r=np.array(3.0),
                                                          v_leak=np.array(0.0), v_threshold=np.array(0.5)),
                               type_check=False)
    with pytest.raises(QsnnError, match="Euler step longer than tau"):
        qnir.import_nir(g, dt=DT, timesteps=3)
    net, rep = qnir.import_nir(g, dt=DT, timesteps=3, method="exp")
    assert net.layers[0].neuron.dv == round(4096 * (1 - np.exp(-2))) and net.layers[0].neuron.n == 5
    assert rep["method"] == "exp"


def test_conv_pool_scale_graph_composes_exactly():
    rng = np.random.default_rng(1)
    net, rep = qnir.import_nir(conv_graph(rng), dt=DT, timesteps=8)
    conv1, conv2, fc = (l.synapse for l in net.layers)
    assert [l.name for l in net.layers] == ["cuba1", "lif2", "if"]
    assert isinstance(conv1, Conv) and conv1.padding == (1, 1) and conv1.out_shape == (4, 8, 8)
    # SumPool2d 2 fused into the 3x3 conv: a 6x6 kernel at stride 2, padding 2, the groups kept
    assert isinstance(conv2, Conv) and conv2.kernel == (6, 6) and conv2.stride == (2, 2)
    assert conv2.padding == (2, 2) and conv2.groups == 2 and conv2.out_shape == (4, 4, 4)
    assert rep["layers"]["lif2"]["composed_from"] == [["pool1", "conv2"]]
    # AvgPool2d -> Flatten -> Scale -> Affine is one dense synapse from the (4, 4, 4) map
    assert isinstance(fc, Dense) and fc.weight.shape == (5, 64)
    # measured: local event agreement 0.976, 0.991, 0.965; end to end 0.976, 0.946, 0.646 (the IF integrates
    # without leak the differences of the two layers before it)
    agree = rep["agreement"]["layers"]
    assert min(a["local_event_agreement"] for a in agree.values()) >= 0.93
    assert agree["lif2"]["event_agreement"] >= 0.9 and agree["if"]["event_agreement"] >= 0.55


@pytest.mark.parametrize("first,second", [
    (dict(k=2, s=2, p=0, g=3, pool=True), dict(k=3, s=1, p=1, g=1)),  # pool before conv: fuses
    (dict(k=3, s=1, p=1, g=1), dict(k=2, s=2, p=0, g=3, pool=True)),  # conv before pool: fuses
    (dict(k=3, s=2, p=1, g=3), dict(k=3, s=1, p=1, g=3)),  # grouped conv after conv
    (dict(k=2, s=2, p=1, g=3, pool=True), dict(k=3, s=1, p=1, g=1)),  # padded pool: borders do not fuse
])
def test_composed_maps_equal_the_two_maps(first, second):
    """Whatever _compose returns (a fused conv, or a dense matrix where none reproduces the two) maps
    every input like the two maps one after the other, biases included."""
    rng = np.random.default_rng(2)

    def conv(spec, shape):
        c = shape[0]
        out = c if spec.get("pool") else 3
        k = spec["k"]
        w = np.ones((c, 1, k, k)) if spec.get("pool") else rng.normal(0, 1, (out, c // spec["g"], k, k))
        m = qnir._Map("conv", w, np.zeros(0), shape, (spec["s"],) * 2, (spec["p"],) * 2, spec["g"])
        m.bias = rng.normal(0, 1, m.n_out)
        return m

    a = conv(first, (3, 8, 8))
    b = conv(second, a.out_shape)
    m = qnir._compose(a, b)
    x = torch.from_numpy(rng.normal(0, 1, (4, a.n_in)))
    assert torch.allclose(m.apply(x), b.apply(a.apply(x)), atol=1e-9)
    if first.get("pool") and first["p"] == 0 or second.get("pool"):
        assert m.kind == "conv"


def test_branches_nested_subgraph_conv1d_and_li_current():
    rng = np.random.default_rng(3)
    net, rep = qnir.import_nir(branch_graph(rng), dt=DT, timesteps=10)
    assert [l.name for l in net.layers] == ["a", "b", "c", "sub.spk"]
    conv = net.layers[0].synapse
    assert conv.in_shape == (2, 1, 16) and conv.kernel == (1, 5) and conv.padding == (0, 2)  # dilation 2 unrolled
    c = net.layers[2]
    assert isinstance(c.synapse, Dense) and [k.source for k in c.skips] == ["a"]  # the merge: a skip from 'a'
    spk = net.layers[3].neuron
    assert (spk.du, spk.dv) == (round(4096 * DT / 0.004) - 1, 0)  # LI's tau is the current's; IF keeps v
    # measured: local event agreement 0.992, 0.983, 0.986, 0.978; end to end down to 0.916
    agree = rep["agreement"]["layers"].values()
    assert min(a["local_event_agreement"] for a in agree) >= 0.95 and min(a["event_agreement"] for a in agree) >= 0.85


def test_residual_graph_with_a_strong_identity_shortcut():
    """conv -> A -> conv -> B -> conv -> C, plus A -> Scale(3) -> C: the shortcut is a depthwise 1x1 conv skip
    whose weights exceed the main conv's, so it sets the layer's unit."""
    rng = np.random.default_rng(13)

    def conv(c_in):
        return nir.Conv2d(input_shape=(5, 5), weight=rng.normal(0.05, 0.3, (3, c_in, 3, 3)), stride=1, padding=1,
                          dilation=1, groups=1, bias=full(3, 0.0))

    nodes = {"input": nir.Input(np.array([2, 5, 5])), "c1": conv(2), "A": lif((3, 5, 5), thr=0.5), "c2": conv(3),
             "B": lif((3, 5, 5), thr=0.5), "c3": conv(3), "short": nir.Scale(scale=full(75, 3.0)),
             "C": lif((3, 5, 5), thr=0.5), "output": nir.Output(np.array([3, 5, 5]))}
    edges = [("input", "c1"), ("c1", "A"), ("A", "c2"), ("c2", "B"), ("B", "c3"), ("c3", "C"), ("A", "short"),
             ("short", "C"), ("C", "output")]
    net, rep = qnir.import_nir(graph(nodes, edges), dt=DT, timesteps=6, rate=0.4)
    c = net.layers[2]
    assert [k.source for k in c.skips] == ["A"]
    skip = c.skips[0].synapse
    assert isinstance(skip, Conv) and skip.kernel == (1, 1) and skip.groups == 3 and np.all(skip.weight == 127)
    assert 0 < int(np.abs(c.synapse.weight).max()) < 127
    # measured: local event agreement 0.992, 0.995, 0.997
    assert min(a["local_event_agreement"] for a in rep["agreement"]["layers"].values()) >= 0.95


def test_calibration_sets_weight_exp_and_labels_give_both_accuracies(digits_net):
    """A float graph (our trained digits net exported, its integers dropped) re-quantized at 8 bits with
    calibration data: both accuracies and the agreement are reported."""
    g = qnir.export_nir(digits_net)
    g.metadata = {}
    for node in g.nodes.values():
        node.metadata = {}
    data = ql.load_dataset("digits", timesteps=4)
    x, y = ql.encode(data.test, 4, samples=120)
    net, rep = qnir.import_nir(g, dt=DT, timesteps=4, calibration=x, labels=y)
    assert all(e["headroom"] == "calibration" for e in rep["layers"].values())
    ag = rep["agreement"]
    assert ag["inputs"] == "calibration" and ag["samples"] == 120
    # measured (one epoch of training, so the accuracies are low): float 0.208, integer 0.225; local event
    # agreement 0.979 (fc1) and 0.925 (fc2, 50 output spikes in all)
    assert abs(ag["float_accuracy"] - ag["int_accuracy"]) <= 0.05
    local = {name: a["local_event_agreement"] for name, a in ag["layers"].items()}
    assert local["fc1"] >= 0.95 and local["fc2"] >= 0.85
    assert "accuracy: float" in qnir.format_report(rep)


def test_simulate_float_matches_the_integer_network_of_an_export(digits_net):
    """Our export's floats are its integers times their units: NIR's float equations at dt give nearly the
    same spikes (rtz rounding of the decays is the difference)."""
    data = ql.load_dataset("digits", timesteps=4)
    x, _ = ql.encode(data.test, 4, samples=60)
    floats = qnir.simulate_float(qnir.export_nir(digits_net), x, DT)
    ref = ql.simulate(digits_net, x)
    for layer, s in zip(digits_net.layers, ref.spikes):
        assert np.mean(floats[layer.name] == s) >= 0.99


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(qnir, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


# ------------------------------------------------------------------------------------------ round trips
def round_trip(net: Network, tmp_path, x) -> None:
    path = tmp_path / "net.nir"
    qnir.write_nir(net, path, dt=DT)
    nir.read(path)  # other tools read it with nir's own type check
    back, rep = qnir.import_nir(path)
    assert rep["exact"] and rep["dt"] == DT
    same_ir(net, back)
    same_spikes(net, back, x)


def test_round_trip_trained_digits_network(digits_net, tmp_path):
    x, _ = ql.encode(ql.load_dataset("digits", timesteps=4).test, 4, samples=40)
    round_trip(digits_net, tmp_path, x)


def test_round_trip_conv_net_with_pooling(tmp_path):
    rng = np.random.default_rng(4)
    net = conv_pool_net(rng)
    g = qnir.export_nir(net)
    assert type(g.nodes["pool:synapse"]).__name__ == "SumPool2d"
    round_trip(net, tmp_path, spikes(rng, 4, 6, net.n_in))


def test_round_trip_residual_net(tmp_path):
    rng = np.random.default_rng(5)
    net = residual_net(rng)
    round_trip(net, tmp_path, spikes(rng, 5, 6, net.n_in))


def test_round_trip_every_neuron_form(tmp_path):
    """IF, LIF, CubaLIF and LI -> IF (a current without leak), with and without biases."""
    rng = np.random.default_rng(6)
    kinds = [(4095, 0), (4095, 800), (600, 900), (300, 0)]
    layers, n_in = [], 10
    for i, (du, dv) in enumerate(kinds):
        bias = rng.integers(-20, 30, 7) if dv or du == 4095 else None
        name = f"blk/l{i}" if i == 1 else f"l{i}"
        layers.append(Layer(name, Dense(rng.integers(-60, 61, (7, n_in)), weight_exp=i - 2),
                            LIF(7, vth=40, du=du, dv=dv, bias_mant=bias, bias_exp=2)))
        n_in = 7
    net = Network((10,), layers, 6, meta={"note": "every neuron form"}).validate()
    g = qnir.export_nir(net)
    names = ["l0", "blk|l1", "l2", "l3"]  # '/' would be an HDF5 path: the node is renamed, the layer is not
    assert [type(g.nodes[n]).__name__ for n in names] == ["IF", "LIF", "CubaLIF", "IF"]
    assert type(g.nodes["l3:current"]).__name__ == "LI"
    round_trip(net, tmp_path, spikes(rng, 6, 8, 10, 0.5))


def test_round_trip_recurrent_net(tmp_path):
    rng = np.random.default_rng(12)
    net = recurrent_net(rng)
    g = qnir.export_nir(net)
    assert ("d", "d:recurrent") in g.edges and ("d:recurrent", "d") in g.edges
    assert ("o:recurrent", "o:current") in g.edges  # into the LI that is the readout's current
    x = spikes(rng, 6, 6, net.n_in, 0.4)
    assert all(int(s[-1].sum()) > 0 for s in ql.simulate(net, x).spikes[1:])  # spikes at the last step too
    round_trip(net, tmp_path, x)


def test_recurrent_graph_imports_with_the_one_step_delay():
    """The float simulator delays the recurrent path by one step, as the IR does: with exactly representable
    parameters (an exported recurrent net) float and integer spikes agree, and a hand-built one-neuron loop
    fires on the steps the one-step delay predicts."""
    rng = np.random.default_rng(13)
    net = recurrent_net(rng)
    x = spikes(rng, 6, 20, net.n_in, 0.4)
    floats = qnir.simulate_float(qnir.export_nir(net), x, DT)
    for layer, s in zip(net.layers, ql.simulate(net, x).spikes):
        assert np.mean(floats[layer.name] == s) >= 0.97
    # one IF neuron: input 0.6 per step, its own spike feeds back -1.0 one step later
    g = graph({"input": nir.Input(np.array([1])), "w": nir.Linear(weight=np.array([[0.6]])), "n": if_(1, thr=1.0),
               "back": nir.Linear(weight=np.array([[-1.0]])), "output": nir.Output(np.array([1]))},
              [("input", "w"), ("w", "n"), ("n", "back"), ("back", "n"), ("n", "output")])
    x = np.ones((8, 1, 1), np.uint8)
    # v: .6, 1.2 -> spike (reset 0), next step 0.6 - 1.0 < 0 ... the delay decides when it fires again
    out = qnir.simulate_float(g, x, DT)["n"].ravel().tolist()
    assert out == [0, 1, 0, 0, 0, 1, 0, 0]
    imported, rep = qnir.import_nir(g, dt=DT, timesteps=8)
    assert imported.layers[0].recurrent is not None and rep["agreement"]
    assert ql.simulate(imported, x).spikes[0].ravel().tolist() == out


@pytest.mark.parametrize("kind", ["LI", "CubaLI", "I"])
def test_readout_imports_as_a_voltage_layer(kind):
    """An LI, CubaLI or I feeding the Output is a readout layer (ir.Readout): the integer voltage times its unit
    follows NIR's float voltage, and a readout's prediction is the largest summed voltage."""
    rng = np.random.default_rng(16)
    net, rep = qnir.import_nir(readout_graph(rng, kind), dt=DT, timesteps=10, labels=np.arange(32) % 4)
    ro = net.layers[-1]
    assert ro.neuron.type == "readout" and (ro.neuron.du == 4095) == (kind != "CubaLI")
    assert (ro.neuron.dv == 0) == (kind == "I")
    a = rep["agreement"]["layers"]["ro"]
    assert a["local_voltage_rel_error"] < 0.02 and a["voltage_rel_error"] < 0.2 and a["argmax_agreement"] >= 0.9, a
    assert "int_accuracy" in rep["agreement"] and "readout" in qnir.format_report(rep)


def test_round_trip_readouts(tmp_path):
    """Export writes a readout as I, LI or CubaLI, and imports it back to the identical IR and voltages."""
    rng = np.random.default_rng(17)
    for du, dv, kind in [(4095, 0, "I"), (4095, 700, "LI"), (900, 500, "CubaLI")]:
        layers = [Layer("h", Dense(rng.integers(-40, 41, (6, 10))), LIF(6, vth=20, du=300, dv=200),
                        recurrent=Dense(rng.integers(-20, 21, (6, 6)))),
                  Layer("ro", Dense(rng.integers(-60, 61, (3, 6))),
                        ql.Readout(3, du=du, dv=dv, bias_mant=rng.integers(-6, 7, 3), bias_exp=6))]
        net = Network((10,), layers, 6).validate()
        assert type(qnir.export_nir(net).nodes["ro"]).__name__ == kind
        x = spikes(rng, 6, 5, 10, 0.4)
        round_trip(net, tmp_path, x)
        back, _ = qnir.import_nir(qnir.export_nir(net))
        assert np.array_equal(ql.simulate(back, x).voltages["ro"], ql.simulate(net, x).voltages["ro"])
    net.layers[-1].neuron = ql.Readout(3, du=900, dv=0)
    with pytest.raises(QsnnError, match="layer 1 \\(ro\\): cannot export to NIR: NIR's CubaLI needs a finite"):
        qnir.export_nir(net)


def test_recurrence_between_populations_is_refused_by_name():
    rng = np.random.default_rng(14)
    g = graph({"input": nir.Input(np.array([3])), "f1": affine(rng, 3, 3), "a": lif(3), "f2": affine(rng, 3, 3),
               "b": lif(3), "back": affine(rng, 3, 3), "output": nir.Output(np.array([3]))},
              [("input", "f1"), ("f1", "a"), ("a", "f2"), ("f2", "b"), ("b", "back"), ("back", "a"), ("b", "output")])
    with pytest.raises(QsnnError, match="node 'a': recurrence .*from 'b' back into 'a'"):
        qnir.import_nir(g, dt=DT, timesteps=4)


def test_edited_export_is_refused_not_trusted():
    rng = np.random.default_rng(7)
    g = qnir.export_nir(conv_pool_net(rng))
    g.nodes["fc:synapse"].weight = g.nodes["fc:synapse"].weight * 1.5
    with pytest.raises(QsnnError, match=r"node 'fc:synapse': its float weights differ"):
        qnir.import_nir(g)


def test_recurrent_conv_map_is_not_exported():
    conv = Conv(np.ones((1, 1, 2, 2), int), in_shape=(1, 3, 3))
    net = Network((1, 3, 3), [Layer("c", conv, LIF(4, vth=1, du=0, dv=0), recurrent=Dense(np.eye(4, dtype=int)))], 2)
    with pytest.raises(QsnnError, match="layer 0 \\(c\\): cannot export to NIR: the IR's recurrent synapse is a Dense"):
        qnir.export_nir(net)


def test_qmem_is_not_exported():
    net = Network((2,), [Layer("q", Dense(np.ones((1, 2))), ql.QMem(1, vth=1, du=4095, dv=0))], 2)
    with pytest.raises(QsnnError, match="qmem"):
        qnir.export_nir(net)


# ------------------------------------------------------------------------------------------ refusals
def tiny(neuron, extra=None, n=4):
    rng = np.random.default_rng(8)
    pairs = [("input", nir.Input(np.array([6]))), ("fc", affine(rng, n, 6)), ("nrn", neuron)]
    return chain(*pairs, *(extra or []), ("output", nir.Output(np.array([n]))))


def refusal_cases():
    rng = np.random.default_rng(9)
    rec = graph({"input": nir.Input(np.array([3])), "fc": affine(rng, 3, 3), "a": lif(3), "back": affine(rng, 3, 3),
                 "output": nir.Output(np.array([3]))},
                [("input", "fc"), ("fc", "a"), ("a", "back"), ("back", "fc"), ("a", "output")])
    par = graph({"input": nir.Input(np.array([3])), "f1": affine(rng, 3, 3), "f2": affine(rng, 3, 3), "a": lif(3),
                 "b": lif(3), "output": nir.Output(np.array([3]))},
                [("input", "f1"), ("input", "f2"), ("f1", "a"), ("f2", "b"), ("a", "output")])
    taus = nir.LIF(tau=np.array([0.01, 0.02, 0.01, 0.01]), r=full(4, 10.0), v_leak=full(4, 0), v_threshold=full(4, 1))
    return {
        "LI": (tiny(nir.LI(tau=full(4, 0.01), r=full(4, 10.0), v_leak=full(4, 0)), [("fc2", affine(rng, 4, 4)),
                                                                                    ("spk", lif(4))]), False),
        "Delay": (tiny(lif(4), [("d", nir.Delay(delay=full(4, 1.0)))]), False),
        "Threshold": (tiny(nir.Threshold(threshold=full(4, 1.0))), False),
        "recurrence": (rec, False),
        "parallel populations": (par, False),
        "readout without neurons": (tiny(lif(4), [("ro", affine(rng, 4, 4))]), False),
        "Euler step longer than tau": (tiny(lif(4, tau=DT / 2)), False),
        "v_reset": (tiny(lif(4, v_reset=full(4, 0.2))), True),
        "time constants that differ within a layer": (tiny(taus), True),
        "subtractive reset": (tiny(lif(4, metadata={"reset_mechanism": "subtract"})), True),
        "bias on a recurrent synapse": (graph({"input": nir.Input(np.array([6])), "fc": affine(rng, 4, 6),
                                               "nrn": lif(4), "back": affine(rng, 4, 4, bias=0.1),
                                               "output": nir.Output(np.array([4]))},
                                              [("input", "fc"), ("fc", "nrn"), ("nrn", "back"), ("back", "nrn"),
                                               ("nrn", "output")]), True),
        "bias into a synaptic filter": (chain(("input", nir.Input(np.array([6]))), ("fc", affine(rng, 4, 6, bias=0.2)),
                                              ("nrn", cuba(4)), ("output", nir.Output(np.array([4])))), True),
    }


@pytest.mark.parametrize("key", list(refusal_cases()))
def test_refusals_name_the_node_and_the_reason(key):
    g, approximable = refusal_cases()[key]
    with pytest.raises(QsnnError) as info:
        qnir.import_nir(g, dt=DT, timesteps=4)
    msg = str(info.value)
    assert "\n" not in msg and key in msg and "node" in msg
    if approximable:
        assert "approximate=True" in msg
        net, rep = qnir.import_nir(g, dt=DT, timesteps=4, approximate=True)
        assert rep["approximations"] and net.validate()


def test_conv_padding_refusals():
    rng = np.random.default_rng(10)

    def conv_net(**kw):
        spec = dict(input_shape=(6, 6), weight=rng.normal(0, 1, (2, 1, 2, 2)), stride=1, padding=0, dilation=1,
                    groups=1, bias=full(2, 0))
        spec.update(kw)
        c = nir.Conv2d(**spec)
        return chain(("input", nir.Input(np.array([1, 6, 6]))), ("c", c), ("n", lif(c.output_type["output"])),
                     ("output", nir.Output(c.output_type["output"])))

    with pytest.raises(QsnnError, match="node 'c'.*'same' padding"):
        qnir.import_nir(conv_net(padding="same"), dt=DT, timesteps=2)  # even kernel
    pool = chain(("input", nir.Input(np.array([1, 6, 6]))),
                 ("p", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1]))),
                 ("n", lif((1, 4, 4))), ("output", nir.Output(np.array([1, 4, 4]))))
    with pytest.raises(QsnnError, match="node 'p'.*AvgPool2d with padding"):
        qnir.import_nir(pool, dt=DT, timesteps=2)


def test_bad_input_is_one_line(tmp_path):
    rng = np.random.default_rng(11)
    text = tmp_path / "x.nir"
    text.write_text("not hdf5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    unknown = tmp_path / "unknown.nir"
    nir.write(unknown, mlp_graph(rng))
    with h5py.File(unknown, "r+") as f:
        del f["node/nodes/fc2/type"]
        f["node/nodes/fc2/type"] = "Spiral"
    bad_input = tmp_path / "bad_input.nir"
    nir.write(bad_input, mlp_graph(rng))
    with h5py.File(bad_input, "r+") as f:
        del f["node/nodes/input/shape"]
        f["node/nodes/input/shape"] = "zz"
    bad_shape = chain(("input", nir.Input(np.array([5]))), ("fc", affine(rng, 4, 6)), ("n", lif(4)),
                      ("output", nir.Output(np.array([4]))))
    cases = [
        (lambda: qnir.import_nir(text, dt=DT, timesteps=2), "is not an HDF5 file"),
        (lambda: qnir.import_nir(other, dt=DT, timesteps=2), "not a NIR graph"),
        (lambda: qnir.import_nir(unknown, dt=DT, timesteps=2), "node 'fc2' has type 'Spiral'"),
        (lambda: qnir.import_nir(tmp_path / "missing.nir", dt=DT, timesteps=2), "not found"),
        (lambda: qnir.import_nir(bad_shape, dt=DT, timesteps=2), "node 'fc'.*takes 6 inputs but receives 5"),
        (lambda: qnir.import_nir(bad_input, dt=DT, timesteps=2), "node 'input'.*must hold numbers"),
        (lambda: qnir.import_nir(mlp_graph(rng), timesteps=2), "holds no time step; give dt"),
        (lambda: qnir.import_nir(mlp_graph(rng), dt=-1.0, timesteps=2), "dt = -1.0 must be a positive"),
        (lambda: qnir.import_nir(mlp_graph(rng), dt=DT), "give timesteps"),
        (lambda: qnir.import_nir(mlp_graph(rng), dt=DT, timesteps=2, calibration=np.ones((3, 2, 20))),
         "calibration spikes have shape"),
        (lambda: qnir.import_nir(42, dt=DT, timesteps=2), "pass a nir.NIRGraph or a .nir path"),
    ]
    for call, pattern in cases:
        with pytest.raises(QsnnError, match=pattern) as info:
            call()
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------ Lava
@pytest.mark.lava
def test_imported_mlp_runs_identically_on_lava():
    rng = np.random.default_rng(0)
    net, _ = qnir.import_nir(mlp_graph(rng), dt=DT, timesteps=12)
    reference_equals_lava(net, spikes(rng, 12, 5, 20))


@pytest.mark.lava
def test_imported_conv_pool_graph_runs_identically_on_lava():
    rng = np.random.default_rng(1)
    net, _ = qnir.import_nir(conv_graph(rng), dt=DT, timesteps=8)
    reference_equals_lava(net, spikes(rng, 8, 3, net.n_in, 0.4))


@pytest.mark.lava
def test_imported_recurrent_graph_runs_identically_on_lava():
    rng = np.random.default_rng(2)
    net, rep = qnir.import_nir(rnn_graph(rng), dt=DT, timesteps=10)
    assert [layer.recurrent is not None for layer in net.layers] == [True, True]
    x = spikes(rng, 10, 5, 12, 0.4)
    assert all(int(s[-1].sum()) > 0 for s in ql.simulate(net, x).spikes)  # the sample boundary is exercised
    reference_equals_lava(net, x)


@pytest.mark.lava
def test_imported_readouts_run_identically_on_lava():
    """LI and CubaLI readouts imported from NIR: Lava's voltages equal the reference's, every step."""
    for seed, kind in enumerate(["LI", "CubaLI"]):
        rng = np.random.default_rng(40 + seed)
        net, _ = qnir.import_nir(readout_graph(rng, kind), dt=DT, timesteps=8)
        x = spikes(rng, 8, 4, 10, 0.4)
        ref, lava = ql.simulate(net, x), ql.simulate(net, x, backend="lava")
        assert np.abs(ref.voltages["ro"]).max() > 0 and ref.spikes[0].sum() > 0
        assert np.array_equal(ref.voltages["ro"], lava.voltages["ro"])
        assert all(np.array_equal(p, q) for p, q in zip(ref.spikes, lava.spikes))


@pytest.mark.lava
def test_recurrent_round_trip_runs_identically_on_lava():
    rng = np.random.default_rng(15)
    net = recurrent_net(rng)
    back, _ = qnir.import_nir(qnir.export_nir(net))
    reference_equals_lava(back, spikes(rng, 6, 4, net.n_in, 0.4))


@pytest.mark.lava
def test_imported_branches_and_subgraph_run_identically_on_lava():
    rng = np.random.default_rng(3)
    net, _ = qnir.import_nir(branch_graph(rng), dt=DT, timesteps=10)
    reference_equals_lava(net, spikes(rng, 10, 4, net.n_in, 0.4))
