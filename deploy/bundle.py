"""Versioned deployment bundles: everything needed to run, and later re-check, a deployed network.

A bundle is a folder written under a temporary name and renamed into place when complete:

    manifest.json        format, version, package versions, sha256 of every file, numeric semantics,
                         design-rule result, resource estimate, network summary
    model.ir.h5          the qsnn-lava IR (always)
    model.net            lava-dl netx HDF5, when netx can express the network (else the reason)
    sample_input.npy     a few input samples [N, T, n_in] (uint8 spikes)
    expected_output.npy  the reference simulator's output-layer spikes for them [N, T, n_out]
    run.py               runs the network on Loihi 2 (Loihi2HwCfg) where lava-loihi is installed, on
                         Lava's CPU fixed_pt models elsewhere, and checks it against expected_output.npy
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from qsnn_lava import __version__
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import Network

FORMAT = "qsnn-lava-bundle"
VERSION = 1
EXIT_NO_LOIHI = 3  # documented: the hardware backend was asked for but lava-loihi is not installed

RUN_SCRIPT = '''#!/usr/bin/env python3
"""Run this qsnn-lava bundle: on Loihi 2 (Loihi2HwCfg) where Intel's lava-loihi is installed, else on
Lava's bit-accurate CPU models (Loihi2SimCfg(select_tag='fixed_pt')); compare with expected_output.npy.
Needs qsnn-lava (pip install qsnn-lava) and lava-nc 0.10.0. Exit 0: output equals the expected spikes."""
import sys
from pathlib import Path

from qsnn_lava.deploy.bundle import run_bundle

if __name__ == "__main__":
    sys.exit(run_bundle(Path(__file__).resolve().parent, hardware="--cpu" not in sys.argv))
'''

NUMERIC_SEMANTICS = {
    "neuron": "CUBA LIF, Lava PyLifResetModelBitAcc: u = wrap24(rtz(u*(4096-du-1)/4096) + (a<<6)); "
              "v = sat24(rtz(v*(4096-dv)/4096) + u + (bias_mant<<bias_exp)); spike if v > vth<<6; v = 0 on spike",
    "synapse": "Dense: a = (sum w*s) << weight_exp (floor for negative), one step of delay per layer",
    "time": "arrays are time-major in zero-delay time; Lava layer i sees sample data from step i+2",
    "readout": "class = argmax of output spike counts, ties to the lowest index",
}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version(), "qsnn-lava": __version__}
    for name in ("lava-nc", "lava-dl", "torch", "numpy", "h5py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_bundle(net: Network, out, sample_input: np.ndarray, drc: dict, resources: dict | None,
                 target: str) -> dict:
    """Write the bundle folder ``out`` atomically; returns the manifest. sample_input: [T, N, n_in]."""
    from qsnn_lava.converters.netx import export_netx
    from qsnn_lava.reference import simulate

    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise QsnnError(f"cannot write bundle '{out}': directory '{parent}' does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        net.save(tmp / "model.ir.h5")
        try:
            export_netx(net, tmp / "model.net")
            netx = {"file": "model.net"}
        except QsnnError as e:
            netx = {"file": None, "reason": str(e)}
        expected = simulate(net, sample_input).spikes[-1]
        np.save(tmp / "sample_input.npy", np.transpose(sample_input, (1, 0, 2)))
        np.save(tmp / "expected_output.npy", np.transpose(expected, (1, 0, 2)))
        (tmp / "run.py").write_text(RUN_SCRIPT)
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target": target, "packages": package_versions(),
            "files": {name: sha256(tmp / name) for name in files},
            "netx": netx, "numeric_semantics": NUMERIC_SEMANTICS, "design_rules": drc, "resources": resources,
            "network": {"input_shape": list(net.input_shape), "timesteps": net.timesteps,
                        "layers": [{"name": layer.name, "neurons": layer.neuron.n, "weight_bits": layer.weight_bits}
                                   for layer in net.layers], "meta": net.meta},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def is_bundle(path) -> bool:
    return Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


def load_manifest(path) -> dict:
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise QsnnError(f"'{path}': manifest.json is unreadable ({e.__class__.__name__}); re-run qsnn-lava deploy") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise QsnnError(f"'{path}' is not a version-{VERSION} qsnn-lava bundle; re-run qsnn-lava deploy")
    return manifest


def modified_files(path) -> list[str]:
    """Files whose sha256 no longer matches the manifest (missing files included)."""
    path = Path(path)
    manifest = load_manifest(path)
    return [name for name, digest in manifest["files"].items()
            if not (path / name).is_file() or sha256(path / name) != digest]


def loihi_installed() -> bool:
    try:
        from lava.utils import loihi
    except ImportError:
        return False
    return bool(loihi.is_installed())


def run_bundle(path, hardware: bool = True) -> int:
    """Run the bundle on its sample input and compare with the expected spikes (the run.py entry)."""
    from qsnn_lava.deploy.backends.lava import run as run_lava

    path = Path(path)
    bad = modified_files(path)
    if bad:
        print(f"bundle files changed since deployment: {', '.join(bad)}")
        return 1
    manifest = load_manifest(path)
    x = np.transpose(np.load(path / "sample_input.npy"), (1, 0, 2))
    expected = np.transpose(np.load(path / "expected_output.npy"), (1, 0, 2))
    if hardware and loihi_installed() and manifest["netx"]["file"]:
        from qsnn_lava.deploy.backends.netx import run_netx

        out = run_netx(path / manifest["netx"]["file"], x, manifest["network"]["timesteps"],
                       len(manifest["network"]["layers"]), hw=True, input_shape=manifest["network"]["input_shape"])
        where = "Loihi 2 (Loihi2HwCfg)"
        mismatches = int((out != expected).sum())
        print(f"{where}: {x.shape[1]} samples, {mismatches} output spike mismatches against the reference")
        return 0 if mismatches == 0 else 1
    runs = {"IR on Lava CPU (Loihi2SimCfg fixed_pt)": run_lava(Network.load(path / "model.ir.h5"), x).spikes[-1]}
    if manifest["netx"]["file"]:
        from qsnn_lava.deploy.backends.netx import run_netx

        runs["netx file on Lava CPU (fixed_pt)"] = run_netx(
            path / manifest["netx"]["file"], x, manifest["network"]["timesteps"], len(manifest["network"]["layers"]),
            input_shape=manifest["network"]["input_shape"])
    total = 0
    for where, out in runs.items():
        mismatches = int((out != expected).sum())
        total += mismatches
        print(f"{where}: {x.shape[1]} samples, {mismatches} output spike mismatches against the reference")
    return 0 if total == 0 else 1
