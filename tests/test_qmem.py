"""The qmem neuron (a LIF whose stored membrane is a b-bit saturating integer): dynamics and Lava, no mocks."""
import numpy as np
import pytest
import torch

from qsnn_lava import dynamics as dyn


def t(*xs):
    return torch.tensor(xs, dtype=torch.int64)


# (a) the storing step and the shift, by hand ------------------------------------------------------------

def test_store_membrane_hand_computed():
    # b = 4: levels -8..7; q = 2: v -> clip(floor(v / 4), -8, 7) * 4
    v = [0, 3, 4, 7, 28, 29, 31, 32, 1000, -1, -4, -5, -32, -33, -1000]
    want = [0, 0, 4, 4, 28, 28, 28, 28, 28, -4, -4, -8, -32, -32, -32]
    assert dyn.store_membrane(t(*v), 4, 2).tolist() == want
    assert dyn.store_membrane(np.array(v, np.int64), 4, 2).tolist() == want
    assert dyn.store_membrane(torch.tensor(v, dtype=torch.float64), 4, 2).tolist() == want
    # b = 2: levels -2..1; q = 0: a plain clip
    assert dyn.store_membrane(t(-7, -2, -1, 0, 1, 2, 9), 2, 0).tolist() == [-2, -2, -1, 0, 1, 1, 1]
    # b = 8, q = 6: -5 >> 6 == -1 (floor), 127 << 6 is the top
    assert dyn.store_membrane(t(-5, 63, 64, 8191, 8192, -8192, -8193, -10 ** 6), 8, 6).tolist() == \
        [-64, 0, 64, 8128, 8128, -8192, -8192, -8192]
    assert dyn.store_membrane(t(5, -5), 0, 3).tolist() == [5, -5]  # mem_bits 0: the full membrane
    for bits, shift in ((1, 0), (9, 0), (4, -1), (4, 24)):
        with pytest.raises(ValueError):
            dyn.store_membrane(t(1), bits, shift)


def test_qmem_shift_hand_computed():
    assert dyn.qmem_shift(1, 8) == 0  # 127 >= 64
    assert dyn.qmem_shift(2, 8) == 1  # 127 < 128, 254 >= 128
    assert dyn.qmem_shift(10, 4) == 7  # 7 << 6 = 448 < 640, 7 << 7 = 896 >= 640
    assert dyn.qmem_shift(10, 2) == 10  # 1 << 10 = 1024 >= 640 > 512
    assert dyn.qmem_shift(0, 2) == 0
    assert dyn.qmem_shift((1 << 17) - 1, 2) == 23  # the largest vth still fits 24 bits
    for vth in (1, 3, 64, 100, 1000, 131071):
        for b in range(2, 9):
            q, top = dyn.qmem_shift(vth, b), (1 << (b - 1)) - 1
            assert (top << q) >= vth << 6 and (q == 0 or (top << (q - 1)) < vth << 6)
    with pytest.raises(ValueError):
        dyn.qmem_shift(10, 1)


# (b) numpy int64 path == torch int64 path --------------------------------------------------------------

def run_steps(a, p, as_numpy: bool):
    """lif_step over [T, n] inputs; spikes, u and v traces as numpy, and the overflow counts."""
    if as_numpy:
        a = a.numpy()
        p = p._replace(bias=p.bias.numpy() if isinstance(p.bias, torch.Tensor) else p.bias)
        state = dyn.LIFState(np.zeros(a.shape[1:], np.int64), np.zeros(a.shape[1:], np.int64))
    else:
        state = dyn.lif_init(a.shape[1:], a)
    counts, out = {}, []
    for step in range(a.shape[0]):
        s, state = dyn.lif_step(a[step], state, p, counts)
        out.append([np.asarray(x) for x in (s, state.u, state.v)])
        assert all(type(x) is (np.ndarray if as_numpy else torch.Tensor) for x in (s, state.u, state.v))
    return [np.stack(x) for x in zip(*out)], counts


@pytest.mark.parametrize("mem_bits", [0, 2, 4, 8])
def test_numpy_int_path_equals_torch_int_path(mem_bits):
    rng = np.random.default_rng(mem_bits)
    for du, dv, vth, big in ((0, 0, 10, False), (410, 1024, 37, False), (4095, 4095, 1, False),
                             (4095, 0, 300, False), (100, 7, (1 << 17) - 1, True)):
        hi = (1 << 17) if big else 60  # big: u wraps and v saturates
        a = torch.from_numpy(rng.integers(-hi, hi, (24, 50)).astype(np.int64))
        bias = torch.from_numpy(rng.integers(-2000, 2000, 50).astype(np.int64))
        shift = dyn.qmem_shift(vth, mem_bits) if mem_bits else 0
        for q in {shift, max(0, shift - 3)}:
            p = dyn.LIFParams(vth=vth, du=du, dv=dv, bias=bias, mem_bits=mem_bits, mem_shift=q)
            (st, ut, vt), ct = run_steps(a, p, as_numpy=False)
            (sn, un, vn), cn = run_steps(a, p, as_numpy=True)
            assert np.array_equal(st, sn) and np.array_equal(ut, un) and np.array_equal(vt, vn)
            assert ct == cn
            if big:
                assert ct["u_wraps"] > 0 and ct["v_saturations"] > 0
            if mem_bits:  # every stored v is a b-bit level at the shift
                lvl = vt >> q
                assert np.all(vt == lvl << q) and lvl.min() >= -(1 << (mem_bits - 1))
                assert lvl.max() <= (1 << (mem_bits - 1)) - 1


def test_lif_run_with_mem_bits_matches_steps():
    a = torch.from_numpy(np.random.default_rng(5).integers(-20, 40, (10, 3, 7)).astype(np.int64))
    p = dyn.LIFParams(vth=20, du=300, dv=100, mem_bits=3, mem_shift=dyn.qmem_shift(20, 3))
    s, u, v = dyn.lif_run(a, p, trace=True)
    (sn, un, vn), _ = run_steps(a.reshape(10, -1), p, as_numpy=True)
    assert np.array_equal(s.reshape(10, -1).numpy(), sn) and np.array_equal(v.reshape(10, -1).numpy(), vn)
    assert not torch.equal(s, dyn.lif_run(a, p._replace(mem_bits=0)))  # storing changes the spikes here


# (c) the float (training) path: same values, gradients ----------------------------------------------

@pytest.mark.parametrize("mem_bits", [2, 4, 8])
def test_float_path_bit_identical_and_differentiable(mem_bits):
    rng = np.random.default_rng(10 + mem_bits)
    ai = torch.from_numpy(rng.integers(-30, 60, (16, 40)).astype(np.int64))
    bias = torch.from_numpy(rng.integers(-100, 100, 40).astype(np.int64))
    total = 0
    for vth, du, dv in ((25, 410, 1024), (8, 0, 0), (60, 4095, 300)):
        q = dyn.qmem_shift(vth, mem_bits)
        for shift in {q, max(0, q - 2)}:
            p = dyn.LIFParams(vth=vth, du=du, dv=dv, bias=bias, mem_bits=mem_bits, mem_shift=shift)
            si, ui, vi = dyn.lif_run(ai, p, trace=True)
            af = ai.to(torch.float64).requires_grad_(True)
            sf, uf, vf = dyn.lif_run(af, p._replace(bias=bias.to(torch.float64)), trace=True)
            assert torch.equal(sf.detach().to(torch.int64), si) and torch.equal(vf.detach().to(torch.int64), vi)
            assert torch.equal(uf.detach().to(torch.int64), ui)
            total += int(si.sum())  # (b = 2 at vth 60 is silent: floor storage sinks v to -2^(q+1))
            (sf * torch.from_numpy(rng.standard_normal(sf.shape))).sum().backward()
            assert torch.isfinite(af.grad).all() and af.grad.abs().sum() > 0
    assert total > 0


def test_store_membrane_float_gradient():
    v = torch.tensor([-100.0, -33.0, -32.0, -5.0, 0.0, 13.0, 28.0, 31.0, 32.0, 100.0], requires_grad=True)
    out = dyn.store_membrane(v, 4, 2)  # levels -8..7 at q = 2: the clip binds below -32 and from 32 up
    assert out.tolist() == [-32, -32, -32, -8, 0, 12, 28, 28, 28, 28]
    out.sum().backward()
    # straight through inside the range (floor(v / 4) in -8..7), zero where the clip binds
    assert v.grad.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]


# (d) real Lava: RingBuffer -> Dense -> QMemLIF -> Extractor, samples back to back --------------------

def lava_qmem_spikes(x, w, pops):
    """Input spikes [T, N, n_in] and Dense weights [n, n_in] through one QMemLIF per ``pops`` entry (a
    dict of QMemLIF parameters), all in one Lava graph; returns zero-delay spikes [T, N, n] per population."""
    from qsnn_lava.converters.lava_env import import_lava

    import_lava()
    from qsnn_lava.converters import lava_graph
    from qsnn_lava.converters.qmem_lava import QMEM_MODEL_MAP, QMemLIF
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
    from lava.proc.io.source import RingBuffer

    T, N, _ = x.shape
    depth = 1  # one synapse hop: sample k's zero-delay step tau is Lava step k*T + tau + 2
    steps = N * T + depth
    source = RingBuffer(data=lava_graph.source_data(x, steps))
    lw, le = lava_graph.lava_dense_weights(w, 0)
    sinks, lifs = [], []
    for i, kw in enumerate(pops):
        dense = Dense(weights=lw, weight_exp=le, num_weight_bits=8)
        lif = QMemLIF(shape=(w.shape[0],), reset_interval=T, reset_offset=(depth + 1) % T, name=f"qmem{i}", **kw)
        sink = Extractor(shape=(w.shape[0],), buffer_size=lava_graph.EXTRACTOR_BUFFER)
        source.s_out.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        lif.s_out.connect(sink.in_port)
        sinks.append(sink)
        lifs.append(lif)
    cfg = Loihi2SimCfg(select_tag="fixed_pt",
                       exception_proc_model_map={Extractor: PyLoihiExtractorModel, **QMEM_MODEL_MAP})
    raw = [np.zeros((w.shape[0], steps), np.uint8) for _ in sinks]
    runner = lifs[0]
    try:
        runner.run(condition=RunSteps(num_steps=steps, blocking=False), run_cfg=cfg)
        for step in range(steps):  # drain every extractor step by step
            for buf, sink in zip(raw, sinks):
                buf[:, step] = sink.receive()
        runner.wait()
    finally:
        runner.stop()
    return [lava_graph.unpack(r, T, depth, N) for r in raw]


@pytest.mark.lava
@pytest.mark.lava_env  # builds Lava processes in the test process
# Lava's model search re-executes every module of converters/ outside sys.modules; lava_graph's dataclass
# cannot be built that way, and Lava warns and skips it (the model comes from QMEM_MODEL_MAP anyway).
@pytest.mark.filterwarnings("ignore:Cannot import module:UserWarning")
@pytest.mark.parametrize("mem_bits", [2, 4])
def test_lava_qmem_matches_dynamics(mem_bits):
    pytest.importorskip("lava.magma")
    rng = np.random.default_rng(100 + mem_bits)
    T, N, n_in, n = 7, 6, 14, 9
    w = rng.integers(-7, 8, (n, n_in))
    w[:, 0] = 7  # mixed signs with odd weights: Lava's Dense gets 2w and weight_exp -1
    x = (rng.random((T, N, n_in)) < 0.5).astype(np.uint8)
    pops = []
    for vth, du, dv, bias_exp in ((12, 410, 1024, 0), (30, 0, 200, 2)):
        q = dyn.qmem_shift(vth, mem_bits)
        for shift in (q, max(0, q - 2)):  # the shift of the threshold, and a finer one that saturates
            pops.append(dict(vth=vth, du=du, dv=dv, bias_mant=rng.integers(-40, 41, n), bias_exp=bias_exp,
                             mem_bits=mem_bits, mem_shift=shift))
    got = lava_qmem_spikes(x, w, pops)
    a = dyn.dense_accumulate(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(w))
    differs = False
    for kw, lava_spikes in zip(pops, got):
        bias = dyn.effective_bias(torch.from_numpy(kw["bias_mant"]), kw["bias_exp"])
        p = dyn.LIFParams(vth=kw["vth"], du=kw["du"], dv=kw["dv"], bias=bias, mem_bits=mem_bits,
                          mem_shift=kw["mem_shift"])
        ref = dyn.lif_run(a, p).numpy().astype(np.uint8)
        assert int((ref != lava_spikes).sum()) == 0, kw
        assert 0 < int(ref.sum()) < ref.size  # neither silent nor saturated
        differs |= not np.array_equal(ref, dyn.lif_run(a, p._replace(mem_bits=0)).numpy())
    assert differs  # the storing step really acts in this graph


@pytest.mark.lava
@pytest.mark.lava_env
def test_qmem_process_refuses_bad_bits():
    pytest.importorskip("lava.magma")
    from qsnn_lava.converters.qmem_lava import QMemLIF

    for bits, shift in ((0, 0), (9, 0), (4, 30)):
        with pytest.raises(ValueError):
            QMemLIF(shape=(2,), mem_bits=bits, mem_shift=shift)


@pytest.mark.lava
@pytest.mark.parametrize("mem_bits", [2, 4])
def test_trained_qmem_model_converts_and_runs_exactly_on_lava(mem_bits):
    """train --neuron qmem: torch eval == reference == Lava (QMemLIF), and deploy to Loihi is refused."""
    from qsnn_lava.converters.checkpoint import model_to_ir
    from qsnn_lava.deployment.backends.lava import run as run_lava
    from qsnn_lava.deployment.drc import design_rule_check
    from qsnn_lava.deployment.verify import compare
    from qsnn_lava.data import encoded, load_dataset
    from qsnn_lava.models import make_config
    from qsnn_lava.reference import simulate
    from qsnn_lava.training import evaluate, train

    data = load_dataset("digits")
    cfg = make_config(sizes=[64, 32, 10], neuron="qmem", mem_bits=mem_bits, timesteps=4)
    model, hist = train(cfg, data, epochs=2, progress=False)
    net = model_to_ir(model)
    assert {layer.neuron.type for layer in net.layers} == {"qmem"}
    x, _ = encoded(data.test, 4, 50)
    torch_rec, ref, lava = evaluate(model, x), simulate(net, x), run_lava(net, x)
    assert compare(torch_rec, ref)["mismatches"] == 0
    c = compare(ref, lava)
    assert c["mismatches"] == 0, c["first_divergence"]
    assert int(ref.spikes[-1].sum()) > 0
    drc = design_rule_check(net)
    assert not drc["passed"] and any(v["field"] == "neuron type" for v in drc["violations"])
