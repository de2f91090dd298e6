"""The exact fast paths of the LIF loop (dynamics.lif_run's fused loop in float32, int32 and int64) and the
sharded reference equal the int64 lif_step loop, also near the limits of the bounds that prove them."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsnn_lava import dynamics as dyn

I = torch.int64


def steps(a, p):
    """The general int64 lif_step loop (the fallback every fast path must equal): (spikes, u, v)."""
    return dyn._lif_run_steps(a.to(I), p, True, None)


def assert_same(a, p, dtype):
    ref = steps(a, p)
    got = dyn.lif_run(a, p, trace=True, dtype=dtype)
    for r, g in zip(ref, got):
        assert torch.equal(g.to(I), r)
    return ref


def random_case(seed, du, dv, vth, a_max, bias_max, shape=(6, 3, 17)):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-a_max, a_max + 1, shape, generator=g)
    bias = torch.randint(-bias_max, bias_max + 1, shape[2:], generator=g) if bias_max else 0
    return a, dyn.LIFParams(vth=vth, du=du, dv=dv, bias=bias)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), du=st.integers(0, 4095), dv=st.integers(0, 4095), vth=st.integers(0, 3000),
       a_max=st.integers(0, 3000), bias_max=st.integers(0, 5000))
def test_every_proven_dtype_equals_the_int64_step_loop(seed, du, dv, vth, a_max, bias_max):
    a, p = random_case(seed, du, dv, vth, a_max, bias_max)
    proven = dyn._proven_dtypes(p, dyn.max_abs(a), a.shape[0])
    assert proven[-1] == I and dyn.exact_dtype(p, dyn.max_abs(a), a.shape[0]) == proven[0]
    for dtype in proven:
        assert_same(a, p, dtype)
        assert_same(a.to(torch.float32), p, dtype)  # the reference hands float32 sums to the loop
    assert torch.equal(dyn.lif_run(a, p), steps(a, p)[0])  # the default (automatic) path


def v_limit_case(dv: int, margin: int):
    """du = 4095 (u = a << 6), constant input a_max for T steps, vth above reach: v climbs to its bound
    (rtz only lowers it), which sits ``margin`` below what a_max + 1 would reach."""
    T = 8
    for a_max in range(1, 1 << 20):
        if dyn.lif_bound(a_max + 1, 0, 4095, dv, T)[1] >= (1 << 23) - 1 - margin:
            break
    a = torch.full((T, 2, 3), a_max, dtype=I)
    a[:, 1] = -a_max
    return a, dyn.LIFParams(vth=(1 << 17) - 1, du=4095, dv=dv)


def test_float32_near_the_24_bit_limit():
    """dv = 2048 keeps v / 2 (odd part 1): float32 is proven up to the saturation limit and exact there."""
    a, p = v_limit_case(2048, 0)
    assert dyn.exact_dtype(p, dyn.max_abs(a), a.shape[0]) == torch.float32
    _, _, v = assert_same(a, p, torch.float32)
    assert int(v.abs().max()) > (1 << 22)  # the test really runs near 2^23
    one_more = a + a.sign()  # a_max + 1 could saturate: only the int64 lif_step loop is proven
    assert dyn._proven_dtypes(p, dyn.max_abs(one_more), a.shape[0]) == [I]
    assert_same(one_more, p, I)
    with pytest.raises(ValueError, match="does not prove"):
        dyn.lif_run(one_more, p, dtype=torch.float32)


def test_int32_where_float32_is_not_proven():
    """dv = 1 keeps 4095/4096 (odd part 4095): large v makes v * 4095 pass 2^24 (float32 refused) but not
    2^31 (int32 exact)."""
    T = 8
    a = torch.full((T, 1, 4), 200, dtype=I)
    a[:, :, 1::2] = -200
    p = dyn.LIFParams(vth=(1 << 17) - 1, du=4095, dv=1)
    proven = dyn._proven_dtypes(p, 200, T)
    assert proven == [torch.int32, I]
    _, _, v = assert_same(a, p, torch.int32)
    assert int(v.abs().max()) * 4095 >= 1 << 24
    with pytest.raises(ValueError, match="does not prove"):
        dyn.lif_run(a, p, dtype=torch.float32)
    # the refusal is needed: where |x| * 4095 passes 2^24 float32 can round x * 4095/4096 up to the next
    # integer (x = 2^22 + 1: x - 1 + 4095/4096 rounds to x), so the bound is not decoration
    x = torch.tensor([(1 << 22) + 1])
    assert (x.to(torch.float32) * (4095 / 4096)).trunc().to(I) != dyn.rtz_decay(x, 1)


def test_current_decay_and_bias_paths():
    """du < 4095 (u carries over, decayed with the hidden +1) and a bias, negative inputs, every dtype."""
    g = torch.Generator().manual_seed(3)
    a = torch.randint(-400, 401, (10, 4, 9), generator=g)
    for du, dv in ((0, 0), (1, 4095), (2047, 2048), (4094, 17), (300, 100)):
        p = dyn.LIFParams(vth=50, du=du, dv=dv, bias=torch.randint(-3000, 3000, (9,), generator=g))
        for dtype in dyn._proven_dtypes(p, 400, 10):
            assert_same(a, p, dtype)


def test_wrap_saturation_and_qmem_take_the_step_loop_and_count():
    a = torch.full((8, 1, 2), (127 * 50) << 7, dtype=I)
    p = dyn.LIFParams(vth=(1 << 17) - 1, du=0, dv=0)
    assert dyn._proven_dtypes(p, dyn.max_abs(a), 8) == [I]
    counts = {}
    dyn.lif_run(a, p, counts=counts)
    assert counts["u_wraps"] > 0  # the fallback counts the wraps that happen
    q = dyn.LIFParams(vth=20, du=300, dv=100, mem_bits=3, mem_shift=dyn.qmem_shift(20, 3))
    assert dyn._proven_dtypes(q, 5, 8) == [I]
    x = torch.randint(-5, 6, (8, 3, 4))
    assert torch.equal(dyn.lif_run(x, q), steps(x, q)[0])


def test_inplace_reuses_the_input_and_leaves_it_alone_otherwise():
    a, p = random_case(1, 4095, 2048, 30, 60, 100)
    af = a.to(torch.float32)
    keep = af.clone()
    s = dyn.lif_run(af, p, dtype="exact")
    assert torch.equal(af, keep)
    s2 = dyn.lif_run(af, p, dtype="exact", inplace=True)
    assert s2.data_ptr() == af.data_ptr() and torch.equal(s, s2) and torch.equal(s.to(I), steps(a, p)[0])


def test_lif_bound_is_exact_and_matches_a_worst_case_run():
    """The bound is reached by constant worst-case input (no rounding: dv = 0 keeps all of v)."""
    u_max, v_max = dyn.lif_bound(3, 5, 4095, 0, 4)
    assert (u_max, v_max) == (192, 4 * (192 + 5))
    _, u, v = steps(torch.full((4, 1, 1), 3), dyn.LIFParams(vth=(1 << 17) - 1, du=4095, dv=0, bias=5))
    assert int(u.max()) == u_max and int(v.max()) == v_max


def test_sharded_reference_equals_the_step_loop_for_every_shard_layout():
    """simulate (float32 between layers, shards on threads) == every layer through the int64 lif_step loop."""
    from qsnn_lava.models import build_model, make_config
    from qsnn_lava.converters.checkpoint import model_to_ir
    from qsnn_lava.reference import accumulate, simulate

    torch.manual_seed(0)
    cfg = make_config(arch="vgg", sizes=[64, 10], input_shape=(1, 8, 8), channels=[4, 6], timesteps=5)
    net = model_to_ir(build_model(cfg))
    x = (np.random.default_rng(0).random((5, 13, 64)) < 0.4).astype(np.uint8)
    from qsnn_lava.reference import lif_params

    s = torch.from_numpy(x.astype(np.int64))
    expect = []
    for layer in net.layers:
        s = steps(accumulate(layer.synapse, s), lif_params(layer.neuron))[0]
        expect.append(s.numpy())
    assert sum(int(e.sum()) for e in expect) > 0
    for workers, batch in ((1, None), (2, None), (2, 1), (3, 4)):
        rec = simulate(net, x, batch_size=batch, workers=workers)
        for got, e in zip(rec.spikes, expect):
            assert np.array_equal(got, e)


def _direct_vgg(channels, bits=4):
    from qsnn_lava.models import build_model, make_config
    cfg = make_config(arch="vgg", sizes=[64, 10], input_shape=[1, 8, 8], channels=channels, bits=bits, timesteps=3,
                      input="direct", input_bits=8, learn_threshold=True)
    return build_model(cfg)


def test_training_fast_paths_give_the_same_integers():
    """The training forward's shortcuts (the first synapse once for steady direct input, the sum pool as adds
    of slices, float32 layers) give the spikes of the unshortened forward in float64, and eval == training."""
    from qsnn_lava.models import SumPool
    torch.manual_seed(0)
    model = _direct_vgg([4, 8])
    q = torch.randint(0, 256, (1, 5, 64)).expand(3, -1, -1)
    model.train()
    fast = model(q.float())
    assert any(d == torch.float32 for d in model.layer_dtypes)
    model.layer_dtypes = [torch.float64] * len(model.layers)  # the slow, wide path
    varying = q.clone().double()  # not steady: each step's synapse is computed on its own
    slow = model(varying)
    for f, s in zip(fast, slow):
        assert torch.equal(f.double(), s)
    model.eval()  # BatchNorm from the running statistics: compare eval to a training pass that uses them
    ev = model(q)
    assert [e.dtype for e in ev] == [torch.int64] * len(ev)
    pool = SumPool((3, 7, 9), 2)  # odd sizes: the last row and column are dropped, as the stride-2 conv does
    x = torch.randint(0, 2, (2, 4, 3 * 7 * 9))
    w = torch.ones(3, 1, 2, 2, dtype=I)
    assert torch.equal(pool(x), dyn.conv_accumulate(x.reshape(2, 4, 3, 7, 9), w, (2, 2), (0, 0), 3))


def test_a_wide_classifier_trains_in_float64_and_the_convolutions_in_float32():
    """The per-layer proof: a classifier whose fan-in x mantissa passes the float32 bound gets float64 alone."""
    model = _direct_vgg([8, 96])  # fc fan-in 96 * 2 * 2 = 384 at 4 bits: within float32
    assert model.layer_dtypes[-1] == torch.float32
    wide = _direct_vgg([8, 2048])  # fan-in 8192
    assert wide.layer_dtypes[-1] == torch.float64 and wide.layer_dtypes[0] == torch.float32
    assert not wide.float32_exact()
