"""Versioned deployment bundles: everything needed to run, and later re-check, a deployed network.

A bundle is a folder written under a temporary name and renamed into place when complete:

    manifest.json        format, version, package versions, the interpreter that wrote it, sha256 of every
                         other file, numeric semantics, design-rule result, resource estimate, network summary
    model.ir.h5          the qsnn-lava IR (always)
    model.net            lava-dl netx HDF5, when netx can express the network (else the reason)
    sample_input.npy     a few input samples [N, T, n_in] (uint8 spikes)
    expected_output.npy  the reference simulator's output for them [N, T, n_out]: output-layer spikes (uint8),
                         or a readout output layer's voltages (int32)
    run.py               runs the network on Loihi 2 (Loihi2HwCfg) where lava-loihi is installed, on
                         Lava's CPU fixed_pt models elsewhere, and checks it against expected_output.npy

What may be replaced: ``deploy`` replaces an existing folder only when it is a bundle this program wrote
and holds nothing else (``replaceable_bundle``); never the working folder, a folder above it, or one that
holds the deploy's own input (``check_bundle_out``, called before any work).

What is trusted: nothing in a bundle. ``validate_bundle`` is the one check of a manifest, used by
``verify_bundle``, ``run.py`` and every loader: plain file names only, the folder's files exactly those
the manifest lists (regular files, no links), so a bundle never makes us read outside its folder.
``verify_bundle`` then checks the hashes and re-runs the bundle's IR on its own sample input on each
backend, comparing every output spike (or readout voltage) with ``expected_output.npy``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

import numpy as np

from qsnn_lava.errors import QsnnError
from qsnn_lava.io import atomic_dir, check_output
from qsnn_lava.dynamics import V_LIMIT
from qsnn_lava.ir import Network

FORMAT = "qsnn-lava-bundle"
VERSION = 1
EXIT_NO_LOIHI = 3  # documented: the hardware backend was asked for but lava-loihi is not installed

MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 4 << 20  # a real manifest is a few KB; a larger file is not read
REQUIRED_FILES = ("model.ir.h5", "sample_input.npy", "expected_output.npy", "run.py")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")  # a plain name in the bundle folder, no path
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
DEFAULT_BACKENDS = ("reference", "lava")
WHERE = {  # how each way of running a bundle is named in reports
    "reference": "IR on the reference simulator",
    "lava": "IR on Lava CPU (Loihi2SimCfg fixed_pt)",
    "netx": "netx file on Lava CPU (fixed_pt)",
    "loihi2": "netx file on Loihi 2 (Loihi2HwCfg)",
}
REDEPLOY = "re-create the bundle with `qsnn-lava deploy`"

RUN_SCRIPT = '''#!/usr/bin/env python3
"""Run this qsnn-lava bundle: on Loihi 2 (Loihi2HwCfg) where Intel's lava-loihi is installed, else on
Lava's bit-accurate CPU models (Loihi2SimCfg(select_tag='fixed_pt')); compare with expected_output.npy.
Needs qsnn-lava (pip install qsnn-lava) and lava-nc 0.10.0. Exit 0: output equals the expected spikes,
1: it does not, 2: the bundle or this Python cannot run it (one line says why). --cpu: never the chip."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRITTEN_BY = @PYTHON@  # the Python that wrote this bundle, which has qsnn-lava
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    del sys.path[0]  # import qsnn-lava itself, never a module lying in this folder
try:
    from qsnn_lava.deployment.bundle import run_script
except ImportError as e:
    print(f"run.py: error: this Python ({sys.executable}) cannot import qsnn-lava ({e}); run "
          f"`{WRITTEN_BY} {HERE / 'run.py'}` (the Python that wrote this bundle) or "
          f"`qsnn-lava verify {HERE}`", file=sys.stderr)
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(run_script(HERE, sys.argv[1:]))
'''

NUMERIC_SEMANTICS = {
    "neuron": "CUBA LIF, Lava PyLifResetModelBitAcc: u = wrap24(rtz(u*(4096-du-1)/4096) + (a<<6)); "
              "v = sat24(rtz(v*(4096-dv)/4096) + u + (bias_mant<<bias_exp)); spike if v > vth<<6; v = 0 on spike",
    "synapse": "Dense: a = (sum w*s) << weight_exp (floor for negative), one step of delay per layer",
    "time": "arrays are time-major in zero-delay time; Lava layer i sees sample data from step i+2",
    "readout": "class = argmax of output spike counts (a non-spiking readout layer: of its voltage summed over "
               "the steps), ties to the lowest index",
}


def sha256(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict:
    """What the manifest records of the environments: {"python", "qsnn-lava", "torch", "numpy", "h5py"} of
    this (the core's) interpreter, "lava-nc" and "lava-dl" as the Lava environment has them (its worker is
    asked when Lava is not in this interpreter; None without one), and "lava_environment": that
    environment's own versions (None without one)."""
    from qsnn_lava.deployment.backends.lava import lava_available, probe
    from qsnn_lava.io import installed_versions

    out = installed_versions(("qsnn-lava", "lava-nc", "lava-dl", "torch", "numpy", "h5py"))
    out["lava_environment"] = probe()["versions"] if lava_available() else None
    for name in ("lava-nc", "lava-dl"):
        out[name] = out[name] or (out["lava_environment"] or {}).get(name)
    return out


# ---------------------------------------------------------------- where a bundle may be written
def _regular_file(path: Path) -> bool:
    """True for a regular file that is not a link (a link could point outside the bundle)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _entries(path: Path) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it)


def _ours(path: Path) -> dict | None:
    """The manifest of folder ``path`` when it is one this program wrote (format and version), else None."""
    try:
        manifest = _read_manifest(path)
    except QsnnError:
        return None
    files = manifest.get("files")
    return manifest if isinstance(files, dict) else None


def _foreign_entries(path: Path, manifest: dict) -> list[str]:
    """Entries of bundle folder ``path`` that its manifest does not account for (or that are not plain files)."""
    files = manifest["files"]
    return [name for name in _entries(path)
            if not (name == MANIFEST or name in files) or not _regular_file(path / name)]


def replaceable_bundle(path) -> bool:
    """True when folder ``path`` is a bundle this program wrote and holds nothing else: a new deploy may
    replace it without losing anything but a bundle it can write again."""
    path = Path(path)
    try:
        manifest = _ours(path)
        return manifest is not None and not _foreign_entries(path, manifest)
    except OSError:
        return False


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
        raise QsnnError(f"'{path}' cannot be resolved ({e.__class__.__name__}); choose another path") from None


def check_bundle_out(out, inputs=()) -> Path:
    """Refuse, before any work, a bundle folder ``out`` that deploy must not write; returns it as a Path.

    Refused (QsnnError, one line): the working folder or a folder above it (``--out .``), a folder that
    holds one of ``inputs`` (the IR or checkpoint being deployed, or a bundle deployed into itself), an
    existing folder that is not a bundle this program wrote or that holds files the bundle did not write,
    a file, a missing or read-only parent folder. An existing bundle of ours is replaced, after the new
    one is complete.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "notes.txt").write_text("mine")
        4
        >>> check_bundle_out(d / "bundle").name
        'bundle'
        >>> check_bundle_out(d)
        Traceback (most recent call last):
        ...
        qsnn_lava.errors.QsnnError: '...' exists and was not written by this command; it is left untouched: choose a new folder (or remove it yourself)
    """
    out = Path(out)
    where = _resolved(out)
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working folder was removed: nothing there to protect
        cwd = None
    if cwd is not None and (where == cwd or where in cwd.parents):
        raise QsnnError(f"bundle folder '{out}' is the working folder or a folder above it, which deploy would "
                        "replace; give a new folder, e.g. --out bundle")
    for src in inputs:
        if not isinstance(src, (str, os.PathLike)):
            continue
        src_where = _resolved(Path(src))
        if where == src_where or where in src_where.parents:
            raise QsnnError(f"bundle folder '{out}' holds this deploy's input '{src}'; write the bundle to "
                            "another folder")
    if out.is_dir():
        if not os.access(out, os.R_OK | os.X_OK):
            raise QsnnError(f"'{out}' exists and cannot be read, so it cannot be checked; it is left "
                            "untouched: choose a new folder")
        manifest = _ours(out)
        foreign = _foreign_entries(out, manifest) if manifest is not None else []
        if foreign:
            raise QsnnError(f"'{out}' is a qsnn-lava bundle but also holds {foreign[0]!r}, which deploy did "
                            "not write; it is left untouched: move that away or choose a new folder")
    return check_output(out, inputs=[s for s in inputs if isinstance(s, (str, os.PathLike))], kind="dir",
                        replaceable=replaceable_bundle)


def write_bundle(net: Network, out, sample_input: np.ndarray, drc: dict, resources: dict | None,
                 target: str, inputs=()) -> dict:
    """Write the bundle folder ``out``, all or nothing; returns the manifest. sample_input: [T, N, n_in]
    spikes. ``out`` is refused as ``check_bundle_out`` says (``inputs``: the files deploy read)."""
    from qsnn_lava.converters.netx import export_netx
    from qsnn_lava.reference import simulate

    out = check_bundle_out(out, inputs)
    sample_input = np.asarray(sample_input)
    if (sample_input.ndim != 3 or sample_input.shape[0] != net.timesteps or sample_input.shape[1] < 1
            or sample_input.shape[2] != net.n_in or not np.isin(sample_input, range(net.input_max + 1)).all()):
        what = "0/1 spikes" if net.input_bits == 1 else f"{net.input_bits}-bit direct input (0..{net.input_max})"
        raise QsnnError(f"bundle sample input has shape {sample_input.shape}; it must be {what} "
                        f"[T={net.timesteps}, N >= 1, {net.n_in}]")
    sample_input = sample_input.astype(np.uint8)
    with atomic_dir(out, replaceable=replaceable_bundle) as tmp:
        net.save(tmp / "model.ir.h5")
        try:
            export_netx(net, tmp / "model.net")
            netx = {"file": "model.net"}
        except QsnnError as e:
            netx = {"file": None, "reason": str(e)}
        expected = simulate(net, sample_input).output  # a readout's voltages, else spikes
        np.save(tmp / "sample_input.npy", np.transpose(sample_input, (1, 0, 2)))
        np.save(tmp / "expected_output.npy", np.transpose(expected, (1, 0, 2)))
        (tmp / "run.py").write_text(RUN_SCRIPT.replace("@PYTHON@", repr(sys.executable)))
        files = _entries(tmp)
        manifest = {
            "format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target": target, "packages": package_versions(), "interpreter": sys.executable,
            "files": {name: sha256(tmp / name) for name in files},
            "netx": netx, "numeric_semantics": NUMERIC_SEMANTICS, "design_rules": drc, "resources": resources,
            "network": {"input_shape": list(net.input_shape), "timesteps": net.timesteps,
                        "layers": [{"name": layer.name, "neurons": layer.neuron.n, "weight_bits": layer.weight_bits}
                                   for layer in net.layers], "meta": net.meta},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# ---------------------------------------------------------------- what a bundle holds (untrusted)
def is_bundle(path) -> bool:
    """True when ``path`` is a folder holding a manifest.json: it claims to be a bundle, and is read as
    one (``validate_bundle`` then says precisely what is wrong with it, if anything)."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).is_file()


def _bad(path: Path, problem: str) -> QsnnError:
    return QsnnError(f"bundle '{path}': {problem}; {REDEPLOY}")


def _read_manifest(path: Path) -> dict:
    """manifest.json of folder ``path`` as a dict of our format and version (nothing else checked)."""
    file = path / MANIFEST
    if not _regular_file(file):
        what = "is a link or not a regular file" if file.exists() or file.is_symlink() else "is missing"
        raise _bad(path, f"{MANIFEST} {what}")
    if file.stat().st_size > MANIFEST_MAX_BYTES:
        raise _bad(path, f"{MANIFEST} is {file.stat().st_size} bytes, more than a manifest can be "
                         f"({MANIFEST_MAX_BYTES})")
    try:
        manifest = json.loads(file.read_bytes())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, too many digits
        raise _bad(path, f"{MANIFEST} is not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(manifest, dict):
        raise _bad(path, f"{MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise _bad(path, f"{MANIFEST} has no format '{FORMAT}', so this is not a qsnn-lava bundle")
    version = manifest.get("version")
    if type(version) is not int or version != VERSION:
        raise _bad(path, f"{MANIFEST} has version {json.dumps(version)[:40]}; this qsnn-lava reads version "
                         f"{VERSION}")
    return manifest


def _int_field(path: Path, where: str, value, lo: int = 1) -> int:
    if type(value) is not int or value < lo:
        raise _bad(path, f"manifest {where} = {json.dumps(value)[:40]} is not an integer >= {lo}")
    return value


def _check_files(path: Path, files) -> None:
    if not isinstance(files, dict) or not files:
        raise _bad(path, "manifest 'files' must be a non-empty object of file name -> sha256")
    for name, digest in files.items():
        if not FILE_NAME.fullmatch(name) or name in (MANIFEST,):
            raise _bad(path, f"manifest 'files' names {json.dumps(name)[:80]}; only plain file names inside "
                             "the bundle folder are allowed (no path, no '..')")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise _bad(path, f"manifest files['{name}'] is not a sha256 hex digest")
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise _bad(path, f"manifest 'files' does not list {missing[0]}")
    absent = [name for name in files if not _regular_file(path / name)]
    if absent:
        what = "is missing" if not os.path.lexists(path / absent[0]) else "is a link or not a regular file"
        raise _bad(path, f"{absent[0]} {what}")
    try:
        extra = [name for name in _entries(path) if name != MANIFEST and name not in files]
    except OSError as e:
        raise _bad(path, f"the folder cannot be listed ({e.__class__.__name__})") from None
    if extra:
        raise _bad(path, f"{extra[0]!r} is in the bundle folder but not in the manifest's 'files'")


def _check_network(path: Path, network) -> None:
    if not isinstance(network, dict):
        raise _bad(path, "manifest 'network' must be an object")
    _int_field(path, "network.timesteps", network.get("timesteps"))
    shape = network.get("input_shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 3:
        raise _bad(path, "manifest network.input_shape must be a list of 1 to 3 sizes")
    for k, n in enumerate(shape):
        _int_field(path, f"network.input_shape[{k}]", n)
    layers = network.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _bad(path, "manifest network.layers must be a non-empty list")
    for k, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
            raise _bad(path, f"manifest network.layers[{k}] must be an object with a 'name'")
        _int_field(path, f"network.layers[{k}].neurons", layer.get("neurons"))


def validate_bundle(path) -> dict:
    """The manifest of bundle folder ``path``, after checking everything a later step relies on; one
    QsnnError line naming the problem otherwise. The one check used by verify, run.py and loaders.

    Checked: manifest.json is a regular file of at most MANIFEST_MAX_BYTES holding a JSON object of this
    format and version; ``files`` maps plain file names (no path, no '..', no link) to sha256 hex digests,
    lists the required files, and the folder holds exactly those files; ``netx.file`` is null or one of
    them; ``network`` has integer timesteps, input_shape and layer sizes. Hashes are not compared here
    (``modified_files``).
    """
    path = Path(path)
    if not path.is_dir():
        raise QsnnError(f"bundle '{path}' not found (or not a folder); create one with "
                        f"`qsnn-lava deploy IR --out {path}`")
    manifest = _read_manifest(path)
    _check_files(path, manifest.get("files"))
    netx = manifest.get("netx")
    if not isinstance(netx, dict) or "file" not in netx or not (netx["file"] is None or isinstance(netx["file"], str)):
        raise _bad(path, "manifest 'netx' must be an object whose 'file' is a file name or null")
    if netx["file"] is not None and (netx["file"] not in manifest["files"] or netx["file"] in REQUIRED_FILES):
        raise _bad(path, f"manifest netx.file {json.dumps(netx['file'])[:80]} is not one of the bundle's files "
                         "(other than the IR, samples and run.py)")
    _check_network(path, manifest.get("network"))
    if not isinstance(manifest.get("interpreter", ""), str):
        raise _bad(path, "manifest 'interpreter' must be a path")
    return manifest


load_manifest = validate_bundle  # the name loaders use


def modified_files(path, manifest: dict | None = None) -> list[str]:
    """Files whose sha256 no longer matches the (validated) manifest."""
    path = Path(path)
    manifest = validate_bundle(path) if manifest is None else manifest
    return [name for name, digest in sorted(manifest["files"].items()) if sha256(path / name) != digest]


def _spike_array(path: Path, name: str, n: int, top: int = 1, voltages: bool = False) -> np.ndarray:
    """Bundle array ``name`` as uint8 spikes [N, T, n] with values in 0..``top`` (1: 0/1 spikes; 2^b - 1: b-bit
    direct input), or with ``voltages`` a readout's int32 voltages (within the 24-bit range); its shape is
    checked against the file's size before anything is read (memory-mapped), so a crafted header allocates
    nothing."""
    try:
        a = np.load(path / name, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise _bad(path, f"{name} is not a readable .npy array ({e.__class__.__name__})") from None
    if not isinstance(a, np.ndarray):  # an .npz archive under an .npy name
        getattr(a, "close", lambda: None)()
        raise _bad(path, f"{name} is not a single .npy array")
    dtype, what = (np.int32, "int32 voltages") if voltages else (np.uint8, "uint8 spikes")
    if a.dtype != dtype or a.ndim != 3 or a.shape[0] < 1 or a.shape[2] != n:
        raise _bad(path, f"{name} holds {a.dtype} {list(a.shape)}; expected {what} [N >= 1, T, {n}]")
    a = np.array(a)
    if voltages:
        if a.size and np.abs(a).max() > V_LIMIT:
            raise _bad(path, f"{name} holds voltages beyond the 24-bit range")
        return a
    if a.max() > top:
        raise _bad(path, f"{name} holds values other than 0 and 1" if top == 1 else
                   f"{name} holds values above {top} (the network's direct input)")
    return a


def load_bundle(path, manifest: dict | None = None):
    """(IR Network, sample input [T, N, n_in], expected output [T, N, n_out]: spikes, or a readout's voltages) of
    a bundle, every
    shape checked against the IR, and the IR against the manifest's network summary."""
    path = Path(path)
    manifest = validate_bundle(path) if manifest is None else manifest
    net = Network.load(path / "model.ir.h5")
    summary = manifest["network"]
    declared = (summary["timesteps"], tuple(summary["input_shape"]), [layer["neurons"] for layer in summary["layers"]])
    actual = (net.timesteps, tuple(net.input_shape), [layer.neuron.n for layer in net.layers])
    if declared != actual:
        raise _bad(path, f"model.ir.h5 (T, input shape, layer sizes) = {actual} but the manifest says {declared}")
    x = _spike_array(path, "sample_input.npy", net.n_in, net.input_max)
    expected = _spike_array(path, "expected_output.npy", net.layers[-1].neuron.n,
                            voltages=net.layers[-1].neuron.type == "readout")
    if x.shape[:2] != expected.shape[:2] or x.shape[1] != net.timesteps:
        raise _bad(path, f"sample_input.npy {list(x.shape)} and expected_output.npy {list(expected.shape)} "
                         f"must both be [N, T={net.timesteps}, n]")
    return net, np.transpose(x, (1, 0, 2)), np.transpose(expected, (1, 0, 2))


# ---------------------------------------------------------------- running and verifying a bundle
def loihi_installed() -> bool:
    """Whether Intel's lava-loihi (Loihi 2 hardware) is installed in the Lava environment, as its worker
    reports; False without a Lava environment. Lava is never imported into this process."""
    from qsnn_lava.deployment.backends.lava import lava_available, probe

    return lava_available() and bool(probe()["loihi_installed"])


def _check_backends(backends) -> tuple:
    names = tuple(backends)
    bad = [b for b in names if b not in WHERE]
    if bad or not names or len(set(names)) != len(names):
        raise QsnnError(f"bundle backends {','.join(map(str, names)) or '(none)'}: give one or more different "
                        f"ones of {', '.join(WHERE)}")
    return names


def _output(name: str, path: Path, manifest: dict, net: Network, x: np.ndarray, progress: bool):
    """The output [T, N, n_out] of the bundle run on backend ``name``: output-layer spikes, or a readout's
    voltages (``Record.output``)."""
    if name in ("reference", "lava"):
        from qsnn_lava.deployment.backends import get_backend

        return get_backend(name)(net, x, progress=progress).output
    netx = manifest["netx"]
    if netx["file"] is None:
        raise QsnnError(f"bundle '{path}' has no netx file ({netx.get('reason', 'netx cannot express it')}); "
                        f"backend {name} needs one: use reference or lava")
    if name == "loihi2" and not loihi_installed():
        raise QsnnError("backend loihi2 needs Intel's lava-loihi (INRC members only); use reference, lava or netx")
    from qsnn_lava.deployment.backends.netx import run_netx
    from qsnn_lava.io import is_hdf5

    if not is_hdf5(path / netx["file"]):
        raise _bad(path, f"netx file {netx['file']} is not HDF5")
    return run_netx(path / netx["file"], x, net.timesteps, len(net.layers), hw=name == "loihi2",
                    input_shape=net.input_shape)


def verify_bundle(path, backends=DEFAULT_BACKENDS, progress: bool = False) -> dict:
    """Check a bundle for real: its manifest (``validate_bundle``), every file's sha256, then its IR (or
    netx file) run on its own sample_input.npy on each backend, every output spike compared with
    expected_output.npy. Backends: reference, lava (the IR on Lava CPU), netx (the netx file on Lava CPU),
    loihi2 (the netx file on the chip). Equivalent only if the hashes match and every backend reproduces
    expected_output.npy exactly; when a file changed nothing is run.

    Returns ``{"equivalent": bool, "samples": N, "bundle": {"path", "files", "modified_files",
    "samples", "mismatches": {backend: count}, "where": {backend: what ran}}}``. A malformed bundle or
    backend list raises QsnnError.
    """
    path = Path(path)
    names = _check_backends(backends)
    manifest = validate_bundle(path)
    changed = modified_files(path, manifest)
    info = {"path": str(path), "files": sorted(manifest["files"]), "modified_files": changed, "samples": 0,
            "mismatches": {}, "where": {}}
    if not changed:
        net, x, expected = load_bundle(path, manifest)
        info["samples"] = int(x.shape[1])
        for name in names:
            out = _output(name, path, manifest, net, x, progress)
            info["mismatches"][name] = int((np.asarray(out) != expected).sum())
            info["where"][name] = WHERE[name]
    equivalent = not changed and all(n == 0 for n in info["mismatches"].values())
    return {"equivalent": equivalent, "samples": info["samples"], "bundle": info}


def report_lines(result: dict) -> list[str]:
    """verify_bundle's result as the lines a person reads; the last says EQUIVALENT or NOT EQUIVALENT."""
    b = result["bundle"]
    if b["modified_files"]:
        lines = [f"bundle {b['path']}: files changed since deployment (sha256 differs from the manifest): "
                 f"{', '.join(b['modified_files'])}"]
    else:
        lines = [f"bundle {b['path']}: every file matches its manifest hash"]
        lines += [f"{b['where'][name]}: {b['samples']} samples, {n} output spike mismatches against "
                  "expected_output.npy" for name, n in b["mismatches"].items()]
    return lines + ["  EQUIVALENT" if result["equivalent"] else "  NOT EQUIVALENT"]


def run_bundle_lines(path, hardware: bool = True, progress: bool = False) -> tuple[int, list[str]]:
    """Run a bundle as its run.py does: on Loihi 2 when ``hardware`` and lava-loihi is installed and the
    bundle has a netx file, else its IR (and netx file, if any) on Lava's CPU models. Returns (0 when
    every run reproduced expected_output.npy else 1, the report lines)."""
    path = Path(path)
    manifest = validate_bundle(path)
    has_netx = manifest["netx"]["file"] is not None
    if hardware and has_netx and loihi_installed():
        backends = ("loihi2",)
    else:
        backends = ("lava", "netx") if has_netx else ("lava",)
    result = verify_bundle(path, backends, progress=progress)
    return (0 if result["equivalent"] else 1), report_lines(result)


def run_bundle(path, hardware: bool = True, progress: bool = False) -> int:
    """Run the bundle on its sample input, print what each run gave, return 0 (equal to the expected
    spikes) or 1 (not, or files changed)."""
    status, lines = run_bundle_lines(path, hardware, progress)
    for line in lines:
        print(line)
    return status


def run_script(path, argv) -> int:
    """The entry of a bundle's run.py: exit 0 equal, 1 not, 2 a bad bundle (one line), 130 interrupted."""
    try:
        return run_bundle(path, hardware="--cpu" not in argv)
    except QsnnError as e:
        print(f"run.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run.py: interrupted", file=sys.stderr)
        return 130
