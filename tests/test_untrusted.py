"""Untrusted files: every loader refuses a bad file with one QsnnError naming the file, the field and the
fix, before anything of a declared size is allocated (issue #13, "Loading untrusted files").

Each test crafts a real file (torch.save of a dict, h5py) the way a corrupt download or a malicious
sender would; the memory test loads the worst of them in a child process under an address-space limit.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch

from qsnn_lava.converters.checkpoint import checkpoint_to_ir, load_model
from qsnn_lava.converters.netx import export_netx, import_netx
from qsnn_lava.errors import QsnnError
from qsnn_lava.io import save_checkpoint
from qsnn_lava.ir import INPUT, LIF, MAX_DELAY, Conv, Dense, Layer, Network, Skip
from qsnn_lava.models import QSNN, make_config


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "qsnn_lava.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def assert_clean_refusal(p, *words):
    """Exit 2, one stderr line 'qsnn-lava: error: ...' naming ``words``, no traceback."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith("qsnn-lava: error:"), p.stderr
    assert "Traceback" not in p.stderr and "weights_only=False" not in p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


# ------------------------------------------------------------------------------------- checkpoints
CFG = make_config(sizes=[16, 12, 4], timesteps=4)


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    return QSNN(CFG).state_dict()


def checkpoint(path, state, config=None, **tensors):
    sd = {k: v.clone() for k, v in state.items()}
    sd.update(tensors)
    save_checkpoint(path, config or CFG, sd, {"dataset": "digits"})
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_weights_are_refused_by_tensor_name(tmp_path, state, value):
    w = state["layers.1.synapse.weight"].clone()
    w[2, 3] = value
    path = checkpoint(tmp_path / "m.pt", state, **{"layers.1.synapse.weight": w})
    with pytest.raises(QsnnError, match=r"'.*m\.pt': tensor 'layers\.1\.synapse\.weight' holds NaN/Inf; .*re-train"):
        checkpoint_to_ir(path)


@pytest.mark.parametrize("key,value,field", [
    ("sizes", [16, 10**9, 4], r"sizes\[1\] = 1000000000 must be a whole number in \[1, 1048576\]"),
    ("sizes", [16, -3, 4], r"sizes\[1\] = -3"),
    ("sizes", [16, 12.5, 4], r"sizes\[1\] = 12\.5"),
    ("sizes", "16,12,4", "sizes = '16,12,4' must be a list"),
    ("sizes", [16, 500_000, 4], r"tensor 'layers\.0\.synapse\.weight' has shape \(12, 16\) but the config"),
    ("timesteps", 10**9, r"timesteps = 1000000000 must be a whole number in \[1, 65536\]"),
    ("theta", float("nan"), "theta = nan must be a number"),
    ("theta", "2.0", "theta = '2.0' must be a number"),
    ("du", 4095.5, "du = 4095.5"),
    ("bits", None, "bits = None"),
    ("quant", ["uniform"], "quantizer \\['uniform'\\] is not supported"),
    ("bn", "yes", "bn = 'yes' must be true or false"),
])
def test_bad_config_values_are_refused_by_field(tmp_path, state, key, value, field):
    path = checkpoint(tmp_path / "m.pt", state, config={**CFG, key: value})
    with pytest.raises(QsnnError, match=field) as e:
        load_model(path)
    assert str(e.value).startswith(f"'{path}'") and "\n" not in str(e.value)


def test_missing_config_key_and_conv_sizes_are_refused(tmp_path, state):
    cfg = dict(CFG)
    del cfg["quant"]
    with pytest.raises(QsnnError, match="model config lacks quant"):
        load_model(checkpoint(tmp_path / "a.pt", state, config=cfg))
    vgg = make_config(arch="vgg", sizes=[2 * 8 * 8, 4], input_shape=[2, 8, 8], channels=[4, 4], timesteps=4)
    torch.manual_seed(0)
    vgg_state = QSNN(vgg).state_dict()
    for key, value, field in (("channels", [10**6, 4], "a layer of 1000000 x 8 x 8 neurons"),
                              ("input_shape", [10**3, 10**3, 10**3], "C\\*H\\*W = 128, got \\[1000, 1000, 1000\\]"),
                              ("input_shape", [2, 8, 10**7], "input_shape\\[2\\] = 10000000 must be"),
                              ("widths", {"conv1": 10**8}, "widths\\['conv1'\\] = 100000000"),
                              ("channels", [5, 4], "tensor 'layers.0.synapse.weight' has shape \\(4, 2, 3, 3\\)")):
        with pytest.raises(QsnnError, match=field):
            load_model(checkpoint(tmp_path / "v.pt", vgg_state, config={**vgg, key: value}))


def test_files_that_are_not_checkpoints_are_named_as_such(tmp_path):
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4000))
    with zipfile.ZipFile(tmp_path / "other.pt", "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # a whole module: unsafe to load
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    for name in ("folder.pt", "random.pt", "other.pt", "pickled.pt", "list.pt"):
        with pytest.raises(QsnnError) as e:
            load_model(tmp_path / name)
        msg = str(e.value)
        assert f"'{tmp_path / name}' is not a qsnn-lava checkpoint" in msg and "qsnn-lava train" in msg, msg
        assert "not found" not in msg and "weights_only" not in msg and len(msg) < 250, msg


def test_cli_convert_refuses_a_bad_checkpoint_and_writes_nothing(tmp_path, state):
    w = state["layers.0.synapse.weight"].clone()
    w[0, 0] = float("nan")
    checkpoint(tmp_path / "nan.pt", state, **{"layers.0.synapse.weight": w})
    (tmp_path / "dir.pt").mkdir()
    for name, words in (("nan.pt", ["nan.pt", "layers.0.synapse.weight", "NaN/Inf"]),
                        ("dir.pt", ["dir.pt", "is not a qsnn-lava checkpoint"])):
        p = cli("convert", tmp_path / name, "-o", tmp_path / "out.h5")
        assert_clean_refusal(p, *words)
        assert not (tmp_path / "out.h5").exists()


# ------------------------------------------------------------------------------------------- IR files
def ir_file(tmp_path, name="n.h5"):
    rng = np.random.default_rng(0)
    net = Network((6,), [Layer("fc1", Dense(rng.integers(-9, 10, (5, 6))), LIF(5, vth=7, du=4095, dv=2048)),
                         Layer("fc2", Dense(rng.integers(-9, 10, (3, 5))), LIF(3, vth=5, du=4095, dv=2048))], 4)
    net.save(tmp_path / name)
    return tmp_path / name


def crafted(path, edit):
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def replace_dataset(f, name, **kw):
    del f[name]
    f.create_dataset(name, **kw)


IR_EDITS = {  # what a crafted file declares -> the field the refusal must name
    "n = 10**9": (lambda f: f["layers/0/neuron"].attrs.__setitem__("n", 10**9),
                  "/layers/0/neuron: attribute 'n' = 1000000000 must be a whole number in [1, 1048576]"),
    "n = -5": (lambda f: f["layers/1/neuron"].attrs.__setitem__("n", -5), "attribute 'n' = -5"),
    "weight 10**5 x 10**5": (lambda f: replace_dataset(f, "layers/0/synapse/weight", shape=(10**5, 10**5), dtype="i2"),
                             "/layers/0/synapse: weight [n_out, n_in] declares 10000000000 elements"),
    "weight stores nothing": (lambda f: replace_dataset(f, "layers/0/synapse/weight", shape=(5, 6000), dtype="i2"),
                              "dataset 'weight' declares 30000 elements but stores only 0 bytes"),
    "T = 10**9": (lambda f: f.attrs.__setitem__("timesteps", 10**9),
                  "/: attribute 'timesteps' = 1000000000 must be a whole number in [1, 65536]"),
    "version string": (lambda f: f.attrs.__setitem__("version", "2"), "attribute 'version' = '2'"),
    "meta not JSON": (lambda f: f.attrs.__setitem__("meta", "{not json"), "attribute 'meta' of / is not valid JSON"),
    "meta a list": (lambda f: f.attrs.__setitem__("meta", "[1, 2]"), "'meta' of / must be a JSON object"),
    "input_shape 2-D": (lambda f: f.attrs.__setitem__("input_shape", np.ones((2, 2), np.int64)),
                        "attribute 'input_shape' has shape (2, 2)"),
    "input_shape 10**9": (lambda f: f.attrs.__setitem__("input_shape", np.array([10**9])),
                          "attribute 'input_shape' = 1000000000"),
    "vth a string": (lambda f: f["layers/0/neuron"].attrs.__setitem__("vth", "high"), "attribute 'vth' = 'high'"),
    "weight_exp 10**9": (lambda f: f["layers/0/synapse"].attrs.__setitem__("weight_exp", 10**9),
                         "attribute 'weight_exp' = 1000000000"),
    "float bias": (lambda f: replace_dataset(f, "layers/0/neuron/bias_mant", data=np.zeros(5)),
                   "dataset 'bias_mant' has dtype float64; it must hold integers"),
    "bias of the wrong length": (lambda f: replace_dataset(f, "layers/0/neuron/bias_mant", data=np.zeros(9, np.int16)),
                                 "dataset 'bias_mant' has shape (9,), but the attributes declare (5,)"),
    "3-D dense weight": (lambda f: replace_dataset(f, "layers/1/synapse/weight", data=np.zeros((3, 5, 1), np.int16)),
                         "dataset 'weight' has shape (3, 5, 1); it must have 2 axes"),
    "layer gap": (lambda f: f.move("layers/1", "layers/2"), "/layers: holds a group named '2' but none named '1'"),
    "layer named x": (lambda f: f.move("layers/1", "layers/x"), "holds a group named 'x'"),
    "synapse type array": (lambda f: f["layers/0/synapse"].attrs.__setitem__("type", np.arange(3)),
                           "/layers/0/synapse: attribute 'type' must be a text string"),
    "no neuron": (lambda f: f.__delitem__("layers/1/neuron"), "/layers/1: group 'neuron' is missing"),
}


@pytest.mark.parametrize("case", list(IR_EDITS))
def test_crafted_ir_files_are_refused_by_field(tmp_path, case):
    edit, field = IR_EDITS[case]
    path = crafted(ir_file(tmp_path), edit)
    assert path.stat().st_size < 60_000
    for validate in (True, False):  # the DRC's load refuses them too
        with pytest.raises(QsnnError) as e:
            Network.load(path, validate=validate)
        msg = str(e.value)
        assert msg.startswith(f"'{path}': ") and field in msg and "\n" not in msg, msg


def test_crafted_conv_ir_declaring_a_huge_map_is_refused(tmp_path):
    c = Conv(np.ones((2, 1, 3, 3), int), (1, 6, 6), padding=1)
    Network((1, 6, 6), [Layer("c", c, LIF(c.n_out, vth=3, du=4095, dv=2048))], 4).save(tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "a") as f:
        f["layers/0/synapse"].attrs["in_shape"] = np.array([1, 10**7, 6])
    with pytest.raises(QsnnError, match="attribute 'in_shape' = 10000000 must be a whole number in"):
        Network.load(tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "a") as f:
        f["layers/0/synapse"].attrs["in_shape"] = np.array([1, 10**5, 10**5])
    with pytest.raises(QsnnError, match=r"in_shape \(C\*H\*W\) declares 10000000000 elements; at most 1048576"):
        Network.load(tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "a") as f:
        f["layers/0/synapse"].attrs["in_shape"] = np.array([1, 6, 6])
        f["layers/0/synapse"].attrs["padding"] = np.array([10**6, 10**6])
    with pytest.raises(QsnnError, match="padding .* must be smaller than the kernel"):
        Network.load(tmp_path / "c.h5")


def test_cli_refuses_a_crafted_ir(tmp_path):
    path = crafted(ir_file(tmp_path), IR_EDITS["n = 10**9"][0])
    p = cli("simulate", path, "--dataset", "digits", "--samples", "2")
    assert_clean_refusal(p, "n.h5", "attribute 'n' = 1000000000")
    p = cli("export-netx", path, "-o", tmp_path / "out.net")
    assert_clean_refusal(p, "attribute 'n'")
    assert not (tmp_path / "out.net").exists()


def chain(n_layers, skip_from_input_into=None):
    """n one-neuron layers in a chain, optionally with a skip from the input into one layer."""
    layers = [Layer(f"l{i}", Dense([[1]]), LIF(1, vth=0, du=4095, dv=4095)) for i in range(n_layers)]
    if skip_from_input_into is not None:
        layers[skip_from_input_into].skips.append(Skip(INPUT, Dense([[1]])))
    return Network((1,), layers, 2)


def test_skip_delay_register_is_a_design_rule():
    """A skip from the input into layer L arrives depth(L) - 1 steps early: at most MAX_DELAY = 62."""
    assert MAX_DELAY == 62
    assert chain(63, skip_from_input_into=62).depths()[-1] == 63
    assert chain(63, skip_from_input_into=62).violations() == []  # 62 extra steps: the register's maximum
    bad = chain(64, skip_from_input_into=63).violations()
    assert len(bad) == 1 and bad[0].value == 63 and bad[0].hi == 62
    assert "layer 63 (l63) skip 0" in str(bad[0]) and "delay from 'input'" in str(bad[0])
    with pytest.raises(QsnnError, match="delay from 'input'"):
        chain(64, skip_from_input_into=63).validate()


# ------------------------------------------------------------------------------------------ netx files
def netx_file(tmp_path, name="n.net"):
    rng = np.random.default_rng(1)
    net = Network((6,), [Layer("fc1", Dense(rng.integers(-9, 10, (5, 6))),
                               LIF(5, vth=7, du=100, dv=2048, bias_mant=np.arange(5), bias_exp=6)),
                         Layer("fc2", Dense(rng.integers(-9, 10, (3, 5))), LIF(3, vth=5, du=4095, dv=2048))], 4)
    export_netx(net, tmp_path / name)
    return tmp_path / name


def set_dataset(f, name, value):
    if name in f:
        del f[name]
    f.create_dataset(name, data=value)


NETX_EDITS = {  # layer/0 is the input (shape only), layer/1 and layer/2 the dense layers
    "no type": (lambda f: f.__delitem__("layer/1/type"), "layer/1: 'type' is missing"),
    "no neuron type": (lambda f: f.__delitem__("layer/1/neuron/type"), "/layer/1/neuron: 'type' is missing"),
    "no vThMant": (lambda f: f.__delitem__("layer/2/neuron/vThMant"), "layer 2: the neuron has no 'vThMant'"),
    "fractional vThMant": (lambda f: set_dataset(f, "layer/1/neuron/vThMant", 7.5),
                           "'vThMant' = 7.5 must be a whole number in"),
    "bias of the wrong length": (lambda f: set_dataset(f, "layer/1/bias", np.ones(7, np.float32)),
                                 "layer 1: bias holds 7 values; the layer needs 5"),
    "non-numeric group": (lambda f: f.move("layer/2", "layer/two"), "holds a group named 'two' but none named '2'"),
    "shape disagrees": (lambda f: set_dataset(f, "layer/1/shape", np.array([4])),
                        "layer 1: weight (5, 6) does not have one row per neuron of the declared shape (4 neurons)"),
    "shape of 10**9": (lambda f: set_dataset(f, "layer/1/shape", np.array([10**9])),
                       "layer 1: shape = 1000000000 must be a whole number in [1, 1048576]"),
    "weight declared huge": (lambda f: replace_dataset(f, "layer/1/weight", shape=(10**5, 10**5), dtype="f4"),
                             "dense weight (100000, 100000) holds more than"),
    "weight stores nothing": (lambda f: replace_dataset(f, "layer/1/weight", shape=(5, 60000), dtype="f4"),
                              "dataset 'weight' declares 300000 elements but stores only 0 bytes"),
    "NaN weight": (lambda f: set_dataset(f, "layer/2/weight", np.full((3, 5), np.nan, np.float32)),
                   "layer 2: weight holds NaN or Inf"),
    "SDNN input": (lambda f: (f["layer/0"].create_group("neuron").create_dataset("type", data=b"SDNN")),
                   "layer 0: the input layer has an SDNN neuron"),
    "final dense without neuron": (lambda f: f.__delitem__("layer/2/neuron"),
                                   "layer 2 has no neuron: netx runs it as a non-spiking integrator, which the IR "
                                   "has no neuron for"),
}


@pytest.mark.parametrize("case", list(NETX_EDITS))
def test_crafted_netx_files_are_refused_by_field(tmp_path, case):
    edit, field = NETX_EDITS[case]
    path = crafted(netx_file(tmp_path), edit)
    with pytest.raises(QsnnError) as e:
        import_netx(path, timesteps=4)
    msg = str(e.value)
    assert msg.startswith(f"'{path}'") and field in msg and "\n" not in msg, msg


def test_non_square_netx_conv_reads_its_h_w_order(tmp_path):
    """netx stores stride and padding as (H, W) pairs: a non-square conv is read back exactly, not refused."""
    c = Conv(np.arange(36).reshape(3, 2, 3, 2) % 5 - 2, (2, 7, 10), stride=(1, 2), padding=(1, 0))
    net = Network((2, 7, 10), [Layer("c", c, LIF(c.n_out, vth=2, du=4095, dv=2048)),
                               Layer("fc", Dense(np.ones((2, c.n_out), int)), LIF(2, vth=40, du=4095, dv=2048))], 3)
    export_netx(net, tmp_path / "c.net")
    with h5py.File(tmp_path / "c.net") as f:
        assert f["layer/1/stride"][()].tolist() == [1, 2] and f["layer/1/padding"][()].tolist() == [1, 0]
    back = import_netx(tmp_path / "c.net", 3).layers[0].synapse
    assert (back.stride, back.padding, back.out_shape) == ((1, 2), (1, 0), (3, 7, 5))
    assert np.array_equal(back.weight, c.weight)


def test_cli_import_netx_refuses_and_writes_nothing(tmp_path):
    path = crafted(netx_file(tmp_path), NETX_EDITS["final dense without neuron"][0])
    p = cli("import-netx", path, "-o", tmp_path / "out.h5", "--timesteps", "4")
    assert_clean_refusal(p, "n.net", "non-spiking integrator")
    assert not (tmp_path / "out.h5").exists()


# ------------------------------------------------------------------------------------------- memory
LIMITED = r"""
import json, resource, sys
import torch, h5py
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import Network
from qsnn_lava.converters.checkpoint import checkpoint_to_ir
from qsnn_lava.converters.netx import import_netx
import torch._dynamo  # torch imports it lazily on a first call (torch >= 2.4): its cost is not ours

vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20),) * 2)  # 256 MiB above the imports
out = []
for kind, path in json.loads(sys.argv[1]):
    try:
        {"ckpt": checkpoint_to_ir, "ir": Network.load, "netx": lambda p: import_netx(p, 4)}[kind](path)
        out.append("loaded")
    except QsnnError as e:
        out.append(str(e))
print(json.dumps(out))
"""


def test_huge_declarations_are_refused_within_256_mib(tmp_path, state):
    """A checkpoint whose config claims 200,000 hidden neurons (800 MB of weights; its tensors hold 12
    neurons), a small IR that declares a 10**5 x 10**5 weight and a netx file that declares one: all
    refused, none allocated."""
    cases = [
        ("ckpt", checkpoint(tmp_path / "big.pt", state, config={**CFG, "sizes": [16, 200_000, 1000]})),
        ("ir", crafted(ir_file(tmp_path), IR_EDITS["weight 10**5 x 10**5"][0])),
        ("ir", crafted(ir_file(tmp_path, "t.h5"), IR_EDITS["T = 10**9"][0])),
        ("netx", crafted(netx_file(tmp_path), NETX_EDITS["weight declared huge"][0])),
    ]
    p = subprocess.run([sys.executable, "-c", LIMITED, json.dumps([(k, str(v)) for k, v in cases])],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    messages = json.loads(p.stdout)
    for (kind, path), msg in zip(cases, messages):
        assert msg.startswith(f"'{path}'") and "MemoryError" not in msg, (kind, msg)
    assert "tensor 'layers.0.synapse.weight' has shape (12, 16)" in messages[0]
    assert "declares 10000000000 elements" in messages[1] and "timesteps" in messages[2]
