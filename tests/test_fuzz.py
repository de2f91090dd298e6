"""Fuzzing the loaders of untrusted files: checkpoints, IR files and netx files.

Hypothesis mutates valid seed files (deleted fields, fields of another type, extreme numbers such as
10**9 sizes, NaN, Inf and negatives, datasets that declare a huge shape they do not store, renamed layer
groups, flipped bytes, truncation at a random offset). The mutated files are written here; one child
process then loads them all under an address-space limit of 2 GiB above what its imports take
(RLIMIT_AS; importing torch alone maps about 3 GB of CUDA libraries it never touches) and reports each
outcome. Every case must end in a clean load or a one-line QsnnError: any other exception, a
MemoryError or a crash of the child fails the test, naming the case and its mutations.

QSNN_FUZZ_CASES (default 100) sets the cases per format; the test prints the counts it ran.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsnn_lava.ir import INPUT, LIF, Conv, Dense, Layer, Network, QMem, Skip, sum_pool

CASES = int(os.environ.get("QSNN_FUZZ_CASES", "100"))
LIMIT_BYTES = 2 << 30  # what the loaders may allocate on top of the child's imports
TIMESTEPS = 4

# ----------------------------------------------------------------------------------------- seeds


def ir_seeds(rng) -> list[Network]:
    """A dense network and a conv network with a pool, a strided skip and a qmem layer (every IR type)."""
    dense = Network((12,), [
        Layer("fc1", Dense(rng.integers(-20, 21, (9, 12)), weight_exp=1),
              LIF(9, vth=20, du=100, dv=2048, bias_mant=rng.integers(-20, 40, 9), bias_exp=1)),
        Layer("fc2", Dense(rng.integers(-20, 21, (5, 9))), LIF(5, vth=10, du=4095, dv=0))], TIMESTEPS,
        meta={"note": "fuzz seed"})
    c1 = Conv(rng.integers(-5, 6, (4, 2, 3, 3)), (2, 6, 6), padding=1)
    pool = sum_pool(c1.out_shape, 2)
    c2 = Conv(rng.integers(-5, 6, (4, 4, 3, 3)), pool.out_shape, padding=1)
    skip = Conv(np.full((4, 1, 1, 1), 3), c1.out_shape, stride=(2, 2), groups=4)
    conv = Network((2, 6, 6), [
        Layer("conv1", c1, LIF(c1.n_out, vth=8, du=4095, dv=2048)),
        Layer("pool", pool, LIF(pool.n_out, vth=0, du=4095, dv=4095)),
        Layer("conv2", c2, QMem(c2.n_out, vth=12, du=4095, dv=2048, mem_bits=4), skips=[Skip("conv1", skip)]),
        Layer("fc", Dense(rng.integers(-7, 8, (3, c2.n_out))), LIF(3, vth=5, du=4095, dv=2048),
              skips=[Skip(INPUT, Dense(rng.integers(-3, 4, (3, 72))))])], TIMESTEPS)
    return [dense.validate(), conv.validate()]


def netx_seeds(rng) -> list[Network]:
    """What netx can hold: a dense network with biases at bias_exp 6, and conv -> pool -> dense."""
    dense = Network((12,), [
        Layer("fc1", Dense(rng.integers(-20, 21, (9, 12)), weight_exp=1),
              LIF(9, vth=20, du=100, dv=2048, bias_mant=rng.integers(-5, 6, 9), bias_exp=6)),
        Layer("fc2", Dense(rng.integers(-20, 21, (5, 9))), LIF(5, vth=10, du=4095, dv=0))], TIMESTEPS)
    c1 = Conv(rng.integers(-5, 6, (4, 2, 3, 3)), (2, 6, 6), padding=(1, 0), stride=(1, 2))
    pool = sum_pool(c1.out_shape, 2)
    conv = Network((2, 6, 6), [
        Layer("conv1", c1, LIF(c1.n_out, vth=8, du=4095, dv=2048)),
        Layer("pool", pool, LIF(pool.n_out, vth=0, du=4095, dv=4095)),
        Layer("fc", Dense(rng.integers(-7, 8, (3, pool.n_out))), LIF(3, vth=5, du=4095, dv=2048))], TIMESTEPS)
    return [dense.validate(), conv.validate()]


def checkpoint_seeds(folder: Path) -> list[Path]:
    """An mlp checkpoint and a VGG checkpoint with BatchNorm (the state a conv net folds)."""
    import torch

    from qsnn_lava.io import save_checkpoint
    from qsnn_lava.models import QSNN, make_config

    torch.manual_seed(0)
    paths = []
    for name, cfg in (("mlp", make_config(sizes=[16, 12, 4], timesteps=TIMESTEPS)),
                      ("vgg", make_config(arch="vgg", sizes=[2 * 8 * 8, 4], input_shape=[2, 8, 8], channels=[4, 4],
                                          timesteps=TIMESTEPS))):
        path = folder / f"{name}.pt"
        save_checkpoint(path, cfg, QSNN(cfg).state_dict(), meta={"dataset": "digits"})
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------- mutations
NASTY_NUMBERS = [0, -1, -7, 2, 10**9, -(10**9), 2**31, 2**62, 1.5, -0.5, 1e300, float("nan"), float("inf"),
                 -float("inf"), True]
NASTY_VALUES = NASTY_NUMBERS + ["abc", "", "{not json", "[]", "7", None, [], {}, [10**9, 10**9, 10**9],
                                [1, 2], [1.5, 2.5], [-1, 3], ["a", "b"], {"x": 1}]


def _nasty_array(choice: int, rng) -> np.ndarray | None:
    """Replacement data for an HDF5 attribute or dataset: other dtypes, shapes, extreme values."""
    return [
        np.int64(10**9), np.float64(np.nan), np.float32(1.5), np.array([10**9, 10**9], np.int64),
        np.array([], np.int16), np.zeros((3, 3), np.int16), np.array([1.5, 2.5]), np.array([np.inf, -np.inf]),
        np.array([-1, -5], np.int64), np.array(b"garbage"), np.array([b"a", b"b"]), np.bool_(True),
        np.zeros(2, [("a", "<i4"), ("b", "<f8")]), np.array([1 + 2j]), np.int16(-32768),
        rng.integers(-(2**15), 2**15, (7,)).astype(np.int16), np.full((2, 2, 2, 2, 2), 3, np.int8),
        np.array(2**63 - 1, np.int64), np.array([0], np.uint64) - np.uint64(1), np.float16(65504),
    ][choice]


H5_OPS = ("del_attr", "set_attr", "set_attr_value", "del_obj", "set_dset", "huge_dset", "rename_layer",
          "truncate", "flip")
CKPT_OPS = ("del", "set", "tensor_nan", "tensor_inf", "tensor_shape", "tensor_dtype", "huge_sizes",
            "truncate", "flip")

mutation = st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))


def _h5_sites(path: Path):
    """Every attribute (object path, name), object path and dataset path of an HDF5 file, in order."""
    import h5py

    attrs, objs, dsets = [], [], []
    with h5py.File(path, "r") as f:
        attrs += [("/", k) for k in sorted(f.attrs)]

        def visit(name, obj):
            objs.append(name)
            if isinstance(obj, h5py.Dataset):
                dsets.append(name)
            attrs.extend((name, k) for k in sorted(obj.attrs))

        f.visititems(visit)
    return attrs, objs, dsets


def mutate_h5(path: Path, ops: list) -> list[str]:
    """Apply ``ops`` [(op index, a, b)] to the HDF5 file at ``path``; returns what was done (for reports)."""
    import h5py

    done = []
    rng = np.random.default_rng(len(ops))
    for op_i, a, b in ops:
        op = H5_OPS[op_i % len(H5_OPS)]
        if op in ("truncate", "flip"):
            data = bytearray(path.read_bytes())
            if not data:
                continue
            if op == "truncate":
                cut = a % len(data)
                path.write_bytes(bytes(data[:cut]))
                done.append(f"truncate at {cut}")
            else:
                for k in range(1 + b % 8):
                    pos = (a + 7919 * k) % len(data)
                    data[pos] = (b + 31 * k) % 256
                path.write_bytes(bytes(data))
                done.append(f"flip {1 + b % 8} bytes from {a % len(data)}")
            continue
        try:
            attrs, objs, dsets = _h5_sites(path)
            with h5py.File(path, "a") as f:
                if op in ("del_attr", "set_attr", "set_attr_value") and attrs:
                    where, key = attrs[a % len(attrs)]
                    if op == "del_attr":
                        del f[where].attrs[key]
                        done.append(f"del attr {where}@{key}")
                    elif op == "set_attr":
                        value = _nasty_array(b % 20, rng)
                        f[where].attrs[key] = value
                        done.append(f"attr {where}@{key} = {value!r}")
                    else:
                        value = NASTY_VALUES[b % len(NASTY_VALUES)]
                        f[where].attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) or value is None \
                            else value
                        done.append(f"attr {where}@{key} = {value!r}")
                elif op in ("del_obj", "set_dset", "huge_dset") and dsets:
                    name = (objs if op == "del_obj" else dsets)[a % len(objs if op == "del_obj" else dsets)]
                    if op == "del_obj":
                        del f[name]
                        done.append(f"del {name}")
                    elif op == "set_dset":
                        value = _nasty_array(b % 20, rng)
                        del f[name]
                        f.create_dataset(name, data=value)
                        done.append(f"dataset {name} = {value!r}")
                    else:  # a dataset that declares far more than the file stores
                        shape = [(10**5, 10**5), (10**9,), (2**27,), (4096, 4096, 3, 3), (1 << 20, 1 << 11)][b % 5]
                        del f[name]
                        f.create_dataset(name, shape=shape, dtype="i2", chunks=True if b % 2 else None)
                        done.append(f"dataset {name} declares {shape}")
                elif op == "rename_layer":
                    root = "layers" if "layers" in f else "layer"
                    names = sorted(f[root]) if root in f else []
                    if names:
                        old = names[a % len(names)]
                        new = ["abc", "-1", "99", "01", str(len(names)), " 1"][b % 6]
                        if new not in f[root]:
                            f[root].move(old, new)
                            done.append(f"rename {root}/{old} -> {root}/{new}")
        except (OSError, KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
            done.append(f"{op} not applied ({e.__class__.__name__})")  # e.g. the file is truncated already
    return done


def _ckpt_sites(ckpt: dict) -> list[tuple]:
    sites = [(k,) for k in sorted(ckpt)]
    for part in ("config", "state_dict", "meta"):
        if isinstance(ckpt.get(part), dict):
            sites += [(part, k) for k in sorted(ckpt[part])]
    return sites


def mutate_checkpoint(seed: Path, path: Path, ops: list) -> list[str]:
    import torch

    ckpt = torch.load(seed, weights_only=True)
    done, raw_ops = [], []
    for op_i, a, b in ops:
        op = CKPT_OPS[op_i % len(CKPT_OPS)]
        sites = _ckpt_sites(ckpt)
        site = sites[a % len(sites)]
        parent = ckpt if len(site) == 1 else ckpt[site[0]]
        key = site[-1]
        tensors = sorted(ckpt["state_dict"]) if isinstance(ckpt.get("state_dict"), dict) else []
        if op in ("truncate", "flip"):
            raw_ops.append((op, a, b))
        elif op == "del":
            del parent[key]
            done.append(f"del {'.'.join(site)}")
        elif op == "set":
            parent[key] = NASTY_VALUES[b % len(NASTY_VALUES)]
            done.append(f"{'.'.join(site)} = {parent[key]!r}")
        elif op == "huge_sizes" and isinstance(ckpt.get("config"), dict):
            k, v = [("sizes", [10**9, 10**9, 4]), ("sizes", [16, 10**9, 4]), ("channels", [10**6, 10**6]),
                    ("input_shape", [10**3, 10**3, 10**3]), ("timesteps", 10**9), ("widths", {"conv1": 10**8}),
                    ("sizes", [16, -3, 4]), ("sizes", [16, 12.5, 4])][b % 8]
            ckpt["config"][k] = v
            done.append(f"config.{k} = {v!r}")
        elif tensors and isinstance(ckpt["state_dict"][tensors[a % len(tensors)]], torch.Tensor):
            name = tensors[a % len(tensors)]
            t = ckpt["state_dict"][name]
            if op == "tensor_nan" and t.is_floating_point() and t.numel():
                t = t.clone()
                t.view(-1)[b % t.numel()] = float("nan")
            elif op == "tensor_inf" and t.is_floating_point() and t.numel():
                t = t.clone()
                t.view(-1)[b % t.numel()] = float("inf") if b % 2 else -1e38
            elif op == "tensor_shape":
                t = torch.zeros([(3,), (0,), (2, 2), (5, 5, 5), ()][b % 5])
            elif op == "tensor_dtype":
                t = t.to([torch.int64, torch.bool, torch.float16, torch.complex64, torch.uint8][b % 5])
            ckpt["state_dict"][name] = t
            done.append(f"{op} state_dict.{name}")
    torch.save(ckpt, path)
    for op, a, b in raw_ops:
        data = bytearray(path.read_bytes())
        if not data:
            break
        if op == "truncate":
            path.write_bytes(bytes(data[:a % len(data)]))
            done.append(f"truncate at {a % len(data)}")
        else:
            pos = a % len(data)
            data[pos] = b % 256
            path.write_bytes(bytes(data))
            done.append(f"flip byte {pos}")
    return done


# ------------------------------------------------------------------------------------- the child
CHILD = r'''
import json, resource, sys, traceback
import numpy as np
import torch, h5py
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import Network
from qsnn_lava.converters.netx import import_netx
from qsnn_lava.converters.checkpoint import checkpoint_to_ir

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
limit = vm_bytes() + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
LOADERS = {"ckpt": lambda p: checkpoint_to_ir(p),
           "ir": lambda p: (Network.load(p), Network.load(p, validate=False)),
           "ir-drc": lambda p: Network.load(p, validate=False).violations(),
           "netx": lambda p: import_netx(p, %d)}
for case in json.load(open(sys.argv[1])):
    print(json.dumps({"start": case["id"]}), flush=True)
    try:
        LOADERS[case["kind"]](case["path"])
        out = {"id": case["id"], "result": "ok"}
    except QsnnError as e:
        out = {"id": case["id"], "result": "refused", "message": str(e)}
    except BaseException as e:
        out = {"id": case["id"], "result": "bug", "message": "".join(traceback.format_exception(e))[-3000:]}
    print(json.dumps(out), flush=True)
''' % TIMESTEPS


def run_child(cases: list[dict], folder: Path) -> dict:
    """Load every case in one child process under the memory limit; {id: outcome}."""
    listing = folder / "cases.json"
    listing.write_text(json.dumps(cases))
    p = subprocess.run([sys.executable, "-c", CHILD, str(listing), str(LIMIT_BYTES)], capture_output=True,
                       text=True, timeout=600)
    outcomes, running = {}, None
    for line in p.stdout.splitlines():
        msg = json.loads(line)
        if "start" in msg:
            running = msg["start"]
        else:
            outcomes[msg["id"]], running = msg, None
    if running is not None or p.returncode != 0:
        case = next((c for c in cases if c["id"] == running), None)
        pytest.fail(f"the loader child died (exit {p.returncode}) on case {case}: {p.stderr[-2000:]}")
    return outcomes


def collect(strategy, n: int) -> list:
    """``n`` distinct examples of ``strategy``, drawn by hypothesis (derandomized: the same on every run)."""
    drawn = []

    @settings(max_examples=4 * n, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(example):
        if example not in drawn and len(drawn) < n:
            drawn.append(example)

    draw()
    return drawn


def test_loaders_refuse_mutated_files_cleanly(tmp_path):
    from qsnn_lava.converters.netx import export_netx

    rng = np.random.default_rng(0)
    seeds = {"ir": [], "netx": [], "ckpt": checkpoint_seeds(tmp_path)}
    for i, net in enumerate(ir_seeds(rng)):
        net.save(tmp_path / f"seed{i}.ir.h5")
        seeds["ir"].append(tmp_path / f"seed{i}.ir.h5")
    for i, net in enumerate(netx_seeds(rng)):
        export_netx(net, tmp_path / f"seed{i}.net")
        seeds["netx"].append(tmp_path / f"seed{i}.net")

    plan = st.tuples(st.integers(0, 1), st.lists(mutation, min_size=1, max_size=3))
    cases, folder = [], tmp_path / "cases"
    folder.mkdir()
    for kind in ("ckpt", "ir", "netx"):
        for which, ops in collect(plan, CASES):
            seed = seeds[kind][which]
            path = folder / f"{len(cases)}{seed.suffix}"
            if kind == "ckpt":
                done = mutate_checkpoint(seed, path, ops)
            else:
                shutil.copyfile(seed, path)
                done = mutate_h5(path, ops)
            load_as = "ir-drc" if kind == "ir" and len(cases) % 3 == 0 else kind
            cases.append({"id": len(cases), "kind": load_as, "path": str(path), "seed": seed.name, "mutations": done})
    outcomes = run_child(cases, tmp_path)

    counts, bugs = {}, []
    for case in cases:
        out = outcomes[case["id"]]
        kind = case["kind"].split("-")[0]
        message = out.get("message", "")
        if out["result"] == "refused" and ("\n" in message or not message.strip() or "Traceback" in message
                                           or "weights_only=False" in message):
            out["result"] = "bug"  # a refusal must be one line and never advise an unsafe load
        counts.setdefault(kind, {"ok": 0, "refused": 0, "bug": 0})[out["result"]] += 1
        if out["result"] == "bug":
            bugs.append(f"{case}\n{message}")
    print(f"fuzz: {len(cases)} cases: " + "; ".join(f"{k} {v}" for k, v in counts.items()))
    assert not bugs, f"{len(bugs)} of {len(cases)} cases failed (not a clean load or a one-line QsnnError):\n" + \
        "\n\n".join(bugs[:5])
    # the mutations must reach the checks, not only break the files at the first byte
    for kind, c in counts.items():
        assert c["refused"] > CASES // 3, (kind, c)
