"""The integer arithmetic, checked by hand on the cases where Loihi's rules bite."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsnn_lava import dynamics as dyn

I = torch.int64


def t(*v):
    return torch.tensor(v, dtype=I)


def test_decay_rounds_toward_zero_both_signs():
    assert dyn.rtz_decay(t(5, -5, 7, -7), 2048).tolist() == [2, -2, 3, -3]


def test_current_decay_has_hidden_plus_one():
    # du = 0 still decays u by 1/4096 (Lava adds ds_offset = 1); du = 4095 clears it
    s = dyn.LIFState(t(4096), t(0))
    _, st0 = dyn.lif_step(t(0), s, dyn.LIFParams(vth=1000, du=0, dv=4095))
    _, st1 = dyn.lif_step(t(0), s, dyn.LIFParams(vth=1000, du=4095, dv=4095))
    assert st0.u.item() == 4095 and st1.u.item() == 0


def test_input_is_shifted_by_six_and_threshold_is_strict():
    p = dyn.LIFParams(vth=3, du=4095, dv=4095)
    z = dyn.LIFState(t(0), t(0))
    s, st = dyn.lif_step(t(3), z, p)  # v = 3 << 6 == vth << 6: no spike
    assert s.item() == 0 and st.v.item() == 192
    s, st = dyn.lif_step(t(4), z, p)
    assert s.item() == 1 and st.v.item() == 0 and st.u.item() == 256  # v reset, u kept


def test_u_wraps_once_like_lava_and_v_saturates():
    big = 1 << 23
    assert dyn.wrap_u(t(big, big + 1, -big, -big + 1)).tolist() == [big, -big + 1, big, -big + 1]
    assert dyn.saturate_v(t(big + 5, -big - 5)).tolist() == [big - 1, -big + 1]


def test_bias_and_exponent_shifts_floor():
    assert dyn.effective_bias(t(-3, 5), 2).tolist() == [-12, 20]
    assert dyn.shift_exp(t(-3, 3), -1).tolist() == [-2, 1]
    w = t(1, -2, 3).reshape(1, 3)
    assert dyn.dense_accumulate(t(1, 1, 0).reshape(1, 3), w, weight_exp=-1).tolist() == [[-1]]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), du=st.integers(0, 4095), dv=st.integers(0, 4095),
       vth=st.integers(0, 400), exp=st.integers(-3, 3))
def test_float_training_path_equals_integer_path(seed, du, dv, vth, exp):
    """Training (float64 + STE) computes the very same integers as deployment (int64)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-127, 128, (7, 11), generator=g)
    x = (torch.rand(6, 4, 11, generator=g) < 0.5).to(I)
    bias = torch.randint(-300, 300, (7,), generator=g)
    p = dyn.LIFParams(vth=vth, du=du, dv=dv, bias=bias)
    s_int, u_int, v_int = dyn.lif_run(dyn.dense_accumulate(x, w, exp), p, trace=True)
    wf = w.to(torch.float64).requires_grad_()
    s_f, u_f, v_f = dyn.lif_run(dyn.dense_accumulate(x.to(torch.float64), wf, exp), p._replace(
        bias=bias.to(torch.float64)), trace=True)
    assert torch.equal(s_f.to(I), s_int) and torch.equal(u_f.to(I), u_int) and torch.equal(v_f.to(I), v_int)
    s_f.sum().backward()
    assert wf.grad is not None and torch.isfinite(wf.grad).all()


def test_static_bound_is_never_exceeded_and_gates_the_fast_path():
    """Where the bound says a layer is safe, skipping wrap/saturation changes nothing; where it is
    reached, wraps really happen."""
    import numpy as np
    from qsnn_lava.bounds import static_bounds
    from qsnn_lava.ir import LIF, Dense, Layer, Network
    from qsnn_lava.reference import accumulate, lif_params

    w = np.full((2, 50), 127)
    for exp, expect_wrap in ((0, False), (7, True)):
        net = Network((50,), [Layer("l", Dense(w, exp), LIF(2, vth=(1 << 17) - 1, du=0, dv=0))], 8)
        b = static_bounds(net)["l"]
        assert b["u_can_wrap"] == expect_wrap
        x = torch.ones(8, 1, 50, dtype=I)
        counts = {}  # lif_params without a bound: full checks
        _, u, v = dyn.lif_run(accumulate(net.layers[0].synapse, x), lif_params(net.layers[0].neuron),
                              trace=True, counts=counts)
        assert int(u.abs().max()) <= b["u_bound"] and int(v.abs().max()) <= b["v_bound"]
        assert (counts["u_wraps"] > 0) == expect_wrap
