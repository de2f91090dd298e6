"""Networks built in other frameworks, exported with each framework's own NIR exporter, imported here
(``ql.import_nir``): the report's float-vs-integer agreement, one-line refusals of what an exporter emits that
the IR cannot hold, and the integer networks run identically on the reference and on Lava.

Installed beside torch 2.14 / numpy 2 / Python 3.13 (the ``frameworks`` extra): snnTorch 1.0, Norse 1.1,
SpikingJelly 2.0. Sinabs 3.1 is not: it pins nir <= 1.0.4 (docs/nir.md, "Other frameworks")."""
import warnings

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

import qsnn_lava as ql  # noqa: E402
from qsnn_lava.converters.nir import simulate_float  # noqa: E402
from qsnn_lava.errors import QsnnError  # noqa: E402

T = 10


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the frameworks' deprecation warnings (torch.jit, nirtorch)
        yield


def spikes(seed, n, n_in, rate=0.3):
    return (np.random.default_rng(seed).random((T, n, n_in)) < rate).astype(np.uint8)


def imported(graph, dt, x, **kw):
    """Import at ``dt`` with calibration ``x``; every layer fires and agrees with the float graph."""
    net, report = ql.import_nir(graph, dt=dt, timesteps=T, calibration=x, **kw)
    layers = report["agreement"]["layers"]
    assert len(layers) == len(net.layers)
    for name, a in layers.items():
        assert a["float_spikes"] > 0, (name, a)
        assert a["local_event_agreement"] >= 0.95 and a["spike_agreement"] >= 0.97, (name, a)
    return net, report


# ------------------------------------------------------------------------------------------ snnTorch
def snntorch_mlp(sizes=(12, 10, 4)):
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)
        lin.weight.data *= 3
        mods += [lin, snn.Leaky(beta=torch.full((b,), 0.9 - 0.1 * i), threshold=torch.ones(b), init_hidden=True,
                                reset_mechanism="zero", output=i == len(sizes) - 2)]
    return torch.nn.Sequential(*mods)


def test_snntorch_leaky_mlp_imports_and_matches_snntorch_itself():
    model = snntorch_mlp()
    from snntorch.export_nir import export_to_nir

    graph = export_to_nir(model, torch.zeros(12))
    assert sorted(type(n).__name__ for n in graph.nodes.values()) == ["Affine", "Affine", "Input", "LIF", "LIF",
                                                                      "Output"]
    x = spikes(0, 40, 12)
    net, report = imported(graph, 1e-4, x)  # snnTorch's exporter writes tau = dt / (1 - beta) at dt = 1e-4
    assert [layer.neuron.dv for layer in net.layers] == [410, 819]  # 4096 (1 - beta)
    ours = simulate_float(graph, x, 1e-4)[list(graph.nodes)[-2]]
    with torch.no_grad():  # snnTorch's own forward, one step at a time
        import snntorch.utils

        snntorch.utils.reset(model)
        theirs = np.stack([model(torch.from_numpy(x[t]).float())[0].numpy() for t in range(T)])
    assert (ours == theirs).mean() >= 0.99 and theirs.sum() > 0


def test_snntorch_conv_net_imports():
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(1)
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    conv.weight.data *= 2
    model = torch.nn.Sequential(
        conv, snn.Leaky(beta=torch.full((4, 8, 8), 0.9), threshold=torch.ones(4, 8, 8), init_hidden=True,
                        reset_mechanism="zero"),
        torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 3),
        snn.Leaky(beta=torch.full((3,), 0.9), threshold=torch.full((3,), 0.5), init_hidden=True,
                  reset_mechanism="zero", output=True))
    graph = export_to_nir(model, torch.zeros(1, 2, 8, 8), ignore_dims=[0])  # the batch axis is not the input's
    net, _ = imported(graph, 1e-4, spikes(1, 16, 128))
    assert net.input_shape == (2, 8, 8) and net.layers[0].synapse.type == "conv"


def test_snntorch_synaptic_with_a_bias_is_refused_by_name_and_imports_without():
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    def model(bias):
        torch.manual_seed(2)
        lin = torch.nn.Linear(12, 6, bias=bias)
        lin.weight.data *= 3
        return torch.nn.Sequential(lin, snn.Synaptic(alpha=torch.full((6,), 0.5), beta=torch.full((6,), 0.9),
                                                     threshold=torch.ones(6), init_hidden=True,
                                                     reset_mechanism="zero", output=True))

    with pytest.raises(QsnnError, match="node '1' \\(CubaLIF\\): bias into a synaptic filter is not supported"):
        ql.import_nir(export_to_nir(model(True), torch.zeros(12)), dt=1e-4, timesteps=T)
    net, report = imported(export_to_nir(model(False), torch.zeros(12)), 1e-4, spikes(2, 40, 12))
    assert net.layers[0].neuron.du == 2047  # tau_syn = 2 dt: half the current kept


# ------------------------------------------------------------------------------------------ Norse
def norse_mlp(cell):
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(3)
    lin1, lin2 = torch.nn.Linear(12, 10, bias=False), torch.nn.Linear(10, 4, bias=False)
    lin1.weight.data *= 30
    lin2.weight.data *= 40
    return norse, norse.SequentialState(lin1, getattr(norse, cell)(), lin2, getattr(norse, cell)())


def test_norse_lif_box_imports_at_the_square_of_its_dt():
    norse, model = norse_mlp("LIFBoxCell")
    graph = norse.to_nir(model, torch.zeros(1, 12))  # Norse 1.1 writes tau = dt / tau_mem_inv (dt = 1e-3)
    with pytest.raises(QsnnError, match="node '1' \\(LIF\\): Euler step longer than tau"):
        ql.import_nir(graph, dt=1e-3, timesteps=T)
    net, _ = imported(graph, 1e-6, spikes(3, 40, 12))  # dt^2: k = dt / tau = 1e-3 * tau_mem_inv, Norse's step
    assert [layer.neuron.dv for layer in net.layers] == [410, 410]  # 4096 * 1e-3 * 100


def test_norse_lif_cell_imports_as_cuba_lif():
    norse, model = norse_mlp("LIFCell")
    net, _ = imported(norse.to_nir(model, torch.zeros(1, 12)), 1e-6, spikes(4, 40, 12, 0.5))
    assert [(layer.neuron.du, layer.neuron.dv) for layer in net.layers] == [(818, 410)] * 2


def test_norse_conv_export_emits_a_node_nir_does_not_have():
    norse = pytest.importorskip("norse.torch")
    model = norse.SequentialState(torch.nn.Conv2d(2, 4, 3, padding=1), norse.LIFBoxCell(), torch.nn.Flatten(),
                                  torch.nn.Linear(256, 3), norse.LIFBoxCell())
    graph = norse.to_nir(model, torch.zeros(1, 2, 8, 8))  # its Flatten becomes None
    with pytest.raises(QsnnError, match="node '2' is a NoneType, which is not a NIR 1.0 primitive"):
        ql.import_nir(graph, dt=1e-6, timesteps=T)


# ------------------------------------------------------------------------------------------ SpikingJelly
def spikingjelly_nets():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(5)
    mlp = torch.nn.Sequential(layer.Linear(12, 10), neuron.LIFNode(tau=2.0), layer.Linear(10, 4), neuron.IFNode())
    mlp[0].weight.data *= 3
    conv = torch.nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), neuron.LIFNode(tau=2.0), layer.AvgPool2d(2),
                               layer.Flatten(), layer.Linear(64, 3), neuron.LIFNode(tau=2.0))
    conv[0].weight.data *= 3
    conv[4].weight.data *= 30
    return mlp, conv


def test_spikingjelly_mlp_and_conv_import():
    mlp, conv = spikingjelly_nets()
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    net, _ = imported(export_to_nir(mlp, torch.zeros(1, 12), dt=1e-4), 1e-4, spikes(5, 40, 12))
    assert [(layer.neuron.du, layer.neuron.dv) for layer in net.layers] == [(4095, 2048), (4095, 0)]  # LIF, IF
    net, _ = imported(export_to_nir(conv, torch.zeros(1, 2, 8, 8), dt=1e-4), 1e-4, spikes(6, 16, 128))
    assert net.layers[0].synapse.type == "conv"


# ------------------------------------------------------------------------------------------ Lava
@pytest.mark.lava
def test_framework_networks_run_identically_on_lava():
    for name in ("snntorch", "norse", "spikingjelly"):
        pytest.importorskip(name)
    from snntorch.export_nir import export_to_nir as snntorch_export
    from spikingjelly.activation_based.nir_exchange import export_to_nir as sj_export

    norse, model = norse_mlp("LIFCell")
    _, conv = spikingjelly_nets()
    nets = [ql.import_nir(snntorch_export(snntorch_mlp(), torch.zeros(12)), dt=1e-4, timesteps=T)[0],
            ql.import_nir(norse.to_nir(model, torch.zeros(1, 12)), dt=1e-6, timesteps=T)[0],
            ql.import_nir(sj_export(conv, torch.zeros(1, 2, 8, 8), dt=1e-4), dt=1e-4, timesteps=T)[0]]
    for i, net in enumerate(nets):
        x = spikes(10 + i, 4, net.n_in, 0.5)
        ref, lava = ql.simulate(net, x), ql.simulate(net, x, backend="lava")
        assert sum(int((a != b).sum()) for a, b in zip(ref.spikes, lava.spikes)) == 0, i
        assert sum(int(s.sum()) for s in ref.spikes) > 0, i
