"""Deployment bundles: deploy never replaces what it did not write, a manifest is untrusted (one validation,
nothing read outside the bundle), verify re-runs the bundle against its expected output, run.py without
qsnn-lava says what to run. Real bundles, real Lava runs (a few samples)."""
import contextlib
import copy
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from netgen import random_network, random_spikes
from qsnn_lava.deployment import bundle as B
from qsnn_lava.errors import QsnnError

SAMPLES = 3


# ---------------------------------------------------------------- helpers
def snapshot(folder: Path) -> dict:
    """Every entry below ``folder``: relative path -> sha256 of a file, 'dir' for a folder, mode included."""
    out = {}
    for p in sorted(folder.rglob("*")):
        mode = stat.S_IMODE(p.lstat().st_mode)
        out[str(p.relative_to(folder))] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir", mode)
    return out


def write(folder: Path, net=None, rng_seed=0, inputs=()) -> dict:
    rng = np.random.default_rng(rng_seed)
    net = net or random_network(rng, bias=False)
    return B.write_bundle(net, folder, random_spikes(rng, net, SAMPLES), {"passed": True}, None, "cpu", inputs=inputs)


def manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def save_manifest(b: Path, m: dict) -> None:
    (b / "manifest.json").write_text(json.dumps(m, indent=2))


def rehash(b: Path, name: str) -> None:
    """Update the manifest's hash of ``name`` to match the file (what a careless or hostile edit does)."""
    m = manifest(b)
    m["files"][name] = B.sha256(b / name)
    save_manifest(b, m)


def one_line_error(call, *match):
    with pytest.raises(QsnnError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg and all(s in msg for s in match), msg
    return msg


def cli(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "qsnn_lava.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=600, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def error_line(err: str) -> str:
    """The single error line of a failed command (lava-dl may print import noise first)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    return lines[0]


class OpenedPaths:
    """Paths opened (open(), np.load, os.scandir) while recording, via a Python audit hook."""

    def __init__(self):
        self.paths, self.on = [], False
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if self.on and event in ("open", "os.scandir", "os.listdir") and args and isinstance(args[0], (str, Path)):
            self.paths.append(Path(args[0]))

    @contextlib.contextmanager
    def record(self):
        self.paths, self.on = [], True
        try:
            yield self.paths
        finally:
            self.on = False

    def outside(self, folder: Path) -> list:
        """Recorded paths outside ``folder``, other than Python's own module loads."""
        root = folder.resolve()
        return [p for p in self.paths if p.resolve() != root and root not in p.resolve().parents
                and p.suffix not in (".py", ".pyc", ".so", ".pth")]


OPENED = OpenedPaths()


@pytest.fixture(scope="module")
def source_bundle(tmp_path_factory):
    b = tmp_path_factory.mktemp("src") / "b"
    m = write(b)
    assert m["netx"]["file"] == "model.net"
    B.load_bundle(b)  # warm the lazy imports (h5py), so audit-hook checks see only the bundle's own reads
    return b


@pytest.fixture
def bundle(source_bundle, tmp_path):
    """A fresh copy of a valid bundle, with a file beside it that a hostile manifest could point at."""
    b = tmp_path / "b"
    shutil.copytree(source_bundle, b)
    shutil.copy(b / "model.net", tmp_path / "outside.net")
    (tmp_path / "secret.txt").write_text("not the bundle's")
    return b


# ---------------------------------------------------------------- where deploy may write
def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(B, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_bundle_gets_normal_permissions_at_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        write(tmp_path / "b")
    finally:
        os.umask(old)
    b = tmp_path / "b"
    assert stat.S_IMODE(b.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in b.iterdir()} == {
        name: 0o644 for name in ("manifest.json", "model.ir.h5", "model.net", "sample_input.npy",
                                 "expected_output.npy", "run.py")}
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary folder left


def test_existing_non_bundle_folder_is_left_intact(tmp_path):
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("precious")
    (d / "sub" / "data.bin").write_bytes(os.urandom(100))
    (d / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    before = snapshot(tmp_path)
    one_line_error(lambda: write(d), str(d), "not written by this command", "left untouched")
    assert snapshot(tmp_path) == before


def test_bundle_holding_a_user_file_is_not_replaced(bundle):
    (bundle / "notes.txt").write_text("my notes about this run")
    before = snapshot(bundle.parent)
    one_line_error(lambda: write(bundle), "also holds 'notes.txt'", "choose a new folder")
    assert snapshot(bundle.parent) == before


def test_our_bundle_is_replaced_whole(bundle):
    old = manifest(bundle)
    write(bundle, rng_seed=7)
    new = manifest(bundle)
    assert new["files"] != old["files"] and B.verify_bundle(bundle, ("reference",))["equivalent"]
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["b", "outside.net", "secret.txt"]


def test_out_refuses_working_folder_and_folders_above(tmp_path, monkeypatch):
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for out in (".", work, "..", tmp_path, "./"):
        one_line_error(lambda: B.check_bundle_out(out), "working folder or a folder above it")
    assert B.check_bundle_out("bundle") == Path("bundle")


def test_out_refuses_folder_holding_the_deploys_input(bundle):
    for src in (bundle, bundle / "model.ir.h5"):
        before = snapshot(bundle)
        one_line_error(lambda: write(bundle, inputs=[src]), "holds this deploy's input", str(src))
        assert snapshot(bundle) == before
    one_line_error(lambda: B.check_bundle_out(bundle / "model.ir.h5"), "a file of that name exists")


def test_out_parent_must_exist_and_a_failed_write_leaves_nothing(tmp_path, rng):
    one_line_error(lambda: write(tmp_path / "no" / "b"), "does not exist")
    net = random_network(rng, bias=False)
    with pytest.raises(QsnnError, match="sample input has shape"):
        B.write_bundle(net, tmp_path / "b", np.zeros((net.timesteps, 2, 3), np.uint8), {}, None, "cpu")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def ir_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("ir")
    random_network(np.random.default_rng(3), sizes=(64, 12, 10), bias=False).save(d / "m.ir.h5")
    return d / "m.ir.h5"


def test_cli_deploy_out_dot_is_refused_and_cwd_intact(ir_file, tmp_path):
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "train.log").write_text("epoch 1\n")
    (work / "src" / "model.py").write_text("x = 1\n")
    before = snapshot(tmp_path)
    for out in (".", ".."):
        code, out_, err = cli("deploy", ir_file, "--out", out, "--samples", 2, cwd=work)
        assert code == 2, out_ + err
        assert "working folder" in error_line(err)
    assert snapshot(tmp_path) == before


def test_cli_deploy_refuses_a_foreign_folder_and_a_bundle_into_itself(ir_file, bundle):
    mine = bundle.parent / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("a,b\n1,2\n")
    before = snapshot(bundle.parent)
    code, _, err = cli("deploy", ir_file, "--out", mine, "--samples", 2)
    assert code == 2 and "left untouched" in error_line(err)
    code, _, err = cli("deploy", bundle, "--out", bundle, "--samples", 2)
    assert code == 2 and "holds this deploy's input" in error_line(err)
    assert snapshot(bundle.parent) == before


# ---------------------------------------------------------------- a manifest is untrusted
def _set(path_keys, value):
    def edit(b):
        m = manifest(b)
        d = m
        for k in path_keys[:-1]:
            d = d[k]
        d[path_keys[-1]] = value
        save_manifest(b, m)
    return edit


def _drop_from_files(name):
    def edit(b):
        m = manifest(b)
        del m["files"][name]
        if m["netx"]["file"] == name:
            m["netx"] = {"file": None, "reason": "removed"}
        save_manifest(b, m)
    return edit


def _add_file(name, text="x"):
    return lambda b: (b / name).write_text(text)


def _symlink(name, target_name):
    def edit(b):
        (b / name).unlink()
        (b / name).symlink_to(b.parent / target_name)
    return edit


def _manifest_bytes(data: bytes):
    return lambda b: (b / "manifest.json").write_bytes(data)


BAD_MANIFESTS = {
    "files omits a present file": (_drop_from_files("model.net"), "'model.net' is in the bundle folder but not"),
    "extra file": (_add_file("notes.txt"), "'notes.txt' is in the bundle folder but not"),
    "extra folder": (lambda b: (b / "__pycache__").mkdir(), "'__pycache__' is in the bundle folder"),
    "files empty": (_set(["files"], {}), "'files' must be a non-empty object"),
    "files a list": (_set(["files"], ["model.ir.h5"]), "'files' must be a non-empty object"),
    "digest not hex": (_set(["files", "run.py"], "abc"), "files['run.py'] is not a sha256"),
    "digest a number": (_set(["files", "run.py"], 12), "files['run.py'] is not a sha256"),
    "absolute path": (_set(["files", "/etc/passwd"], "0" * 64), '"/etc/passwd"; only plain file names'),
    "dot-dot path": (_set(["files", "../outside.net"], "0" * 64), '"../outside.net"; only plain file names'),
    "subfolder": (_set(["files", "sub/model.net"], "0" * 64), '"sub/model.net"; only plain file names'),
    "manifest lists itself": (_set(["files", "manifest.json"], "0" * 64), "only plain file names"),
    "netx.file outside": (_set(["netx", "file"], "../outside.net"), 'netx.file "../outside.net" is not one of'),
    "netx.file absolute": (_set(["netx", "file"], "/etc/passwd"), "netx.file"),
    "netx.file the IR": (_set(["netx", "file"], "model.ir.h5"), "netx.file"),
    "netx.file a number": (_set(["netx", "file"], 3), "'netx' must be an object"),
    "required file unlisted": (_drop_from_files("sample_input.npy"), "does not list sample_input.npy"),
    "missing file": (lambda b: (b / "model.net").unlink(), "model.net is missing"),
    "file is a link outside": (_symlink("model.net", "outside.net"), "model.net is a link"),
    "manifest is a link": (_symlink("manifest.json", "secret.txt"), "manifest.json is a link"),
    "manifest truncated": (lambda b: (b / "manifest.json").write_text((b / "manifest.json").read_text()[:200]),
                           "manifest.json is not valid JSON"),
    "manifest not UTF-8": (_manifest_bytes(b"\xff\xfe{]"), "manifest.json is not valid JSON"),
    "manifest deeply nested": (_manifest_bytes(b"[" * 100000), "manifest.json is not valid JSON"),
    "manifest a list": (_manifest_bytes(b"[1, 2]"), "manifest.json is not a JSON object"),
    "manifest missing": (lambda b: (b / "manifest.json").unlink(), "manifest.json is missing"),
    "manifest huge": (_manifest_bytes(b" " * (B.MANIFEST_MAX_BYTES + 1)), "more than a manifest can be"),
    "other format": (_set(["format"], "other"), "no format 'qsnn-lava-bundle'"),
    "version true": (_set(["version"], True), "has version true"),
    "version string": (_set(["version"], "1"), "has version \"1\""),
    "timesteps string": (_set(["network", "timesteps"], "5"), "network.timesteps = \"5\""),
    "timesteps float": (_set(["network", "timesteps"], 5.0), "network.timesteps = 5.0"),
    "timesteps huge": (_set(["network", "timesteps"], 10 ** 30), "(T, input shape, layer sizes)"),
    "timesteps negative": (_set(["network", "timesteps"], -1), "network.timesteps = -1"),
    "input_shape a string": (_set(["network", "input_shape"], "12"), "input_shape must be a list"),
    "input_shape zero": (_set(["network", "input_shape"], [0]), "input_shape[0] = 0"),
    "layers an object": (_set(["network", "layers"], {}), "network.layers must be a non-empty list"),
    "layer without name": (_set(["network", "layers"], [{"neurons": 3}]), "network.layers[0] must be an object"),
    "layer sizes differ": (_set(["network", "layers"], [{"name": "a", "neurons": 9}, {"name": "b", "neurons": 7}]),
                           "model.ir.h5 (T, input shape, layer sizes)"),
    "network missing": (lambda b: _set(["network"], None)(b), "'network' must be an object"),
}


def test_bad_manifest_cases_cover_the_issue():
    assert len(BAD_MANIFESTS) >= 35


def test_read_recorder_sees_reads_inside_and_outside(bundle):
    with OPENED.record():
        B.modified_files(bundle)
        (bundle.parent / "secret.txt").read_text()
    assert {p.name for p in OPENED.paths} >= {"manifest.json", "run.py", "model.net", "secret.txt"}
    assert [p.name for p in OPENED.outside(bundle)] == ["secret.txt"]


def test_odd_file_names_are_quoted_on_one_line(bundle):
    (bundle / "a\nb").write_text("x")
    one_line_error(lambda: B.validate_bundle(bundle), "'a\\nb' is in the bundle folder")
    one_line_error(lambda: write(bundle), "also holds 'a\\nb'")


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifest_refused_with_one_line_and_nothing_read_outside(bundle, case):
    edit, match = BAD_MANIFESTS[case]
    edit(bundle)
    before = snapshot(bundle.parent)
    with OPENED.record():
        one_line_error(lambda: B.load_bundle(bundle), f"bundle '{bundle}'", match, "qsnn-lava deploy")
        one_line_error(lambda: B.verify_bundle(bundle, ("reference",)), match)
    assert OPENED.outside(bundle) == []
    assert snapshot(bundle.parent) == before


@pytest.mark.parametrize("case", ["netx.file outside", "dot-dot path", "files omits a present file",
                                  "manifest truncated"])
def test_run_py_refuses_a_bad_manifest(bundle, case):
    edit, match = BAD_MANIFESTS[case]
    edit(bundle)
    p = subprocess.run([sys.executable, bundle / "run.py", "--cpu"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert match in error_line(p.stderr) and error_line(p.stderr).startswith("run.py: error: bundle")


def _npy_bytes(a) -> bytes:
    import io

    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


BAD_ARRAYS = {
    "wrong width": (lambda x: x[:, :, :-1], "sample_input.npy holds uint8"),
    "wrong dtype": (lambda x: x.astype(np.int64), "sample_input.npy holds int64"),
    "not spikes": (lambda x: x * 2, "values other than 0 and 1"),
    "wrong T": (lambda x: x[:, :-1], "must both be [N, T="),
    "no samples": (lambda x: x[:0], "sample_input.npy"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS) + ["pickled objects", "huge declared shape"])
def test_bad_sample_arrays_refused_even_with_updated_hashes(bundle, case):
    if case == "pickled objects":
        data = _npy_bytes(np.array([{"a": 1}], dtype=object))
        match = "is not a readable .npy array"
    elif case == "huge declared shape":  # a header claiming 10**12 bytes over a few bytes of data
        data = _npy_bytes(np.zeros((1, 1, 1), np.uint8)).replace(b"(1, 1, 1)", b"(1000000, 1000, 1000)")
        match = "is not a readable .npy array"
    else:
        change, match = BAD_ARRAYS[case]
        data = _npy_bytes(change(np.load(bundle / "sample_input.npy")))
    (bundle / "sample_input.npy").write_bytes(data)
    rehash(bundle, "sample_input.npy")
    one_line_error(lambda: B.verify_bundle(bundle, ("reference",)), "sample_input.npy", match)


# ---------------------------------------------------------------- verify compares with expected_output.npy
@pytest.mark.lava
def test_untouched_bundle_is_equivalent_on_every_backend(bundle):
    res = B.verify_bundle(bundle)  # the netx backend runs in test_deploy (run.py --cpu: lava and netx)
    assert res["equivalent"] and res["samples"] == SAMPLES
    assert res["bundle"]["mismatches"] == {"reference": 0, "lava": 0}
    assert res["bundle"]["modified_files"] == [] and B.report_lines(res)[-1] == "  EQUIVALENT"


@pytest.mark.lava
def test_edited_ir_with_updated_hash_is_not_equivalent(bundle):
    with h5py.File(bundle / "model.ir.h5", "a") as f:
        f["layers/1/neuron"].attrs["vth"] = 1  # the output layer fires far more
    rehash(bundle, "model.ir.h5")
    res = B.verify_bundle(bundle)
    assert not res["equivalent"] and res["bundle"]["modified_files"] == []
    assert res["bundle"]["mismatches"]["reference"] > 0 and res["bundle"]["mismatches"]["lava"] > 0
    assert res["bundle"]["mismatches"]["reference"] == res["bundle"]["mismatches"]["lava"]
    assert B.report_lines(res)[-1] == "  NOT EQUIVALENT"


def test_edited_expected_output_with_updated_hash_is_not_equivalent(bundle):
    y = np.load(bundle / "expected_output.npy")
    y[0, 0, 0] ^= 1
    np.save(bundle / "expected_output.npy", y)
    rehash(bundle, "expected_output.npy")
    res = B.verify_bundle(bundle, ("reference",))
    assert not res["equivalent"] and res["bundle"]["mismatches"] == {"reference": 1}


@pytest.mark.lava
def test_readout_bundle_checks_voltages_on_reference_and_lava(tmp_path):
    """A network ending in a non-spiking readout outputs voltages: the bundle stores them (int32), both backends
    reproduce them exactly, and a voltage edited by one unit (hash updated) is caught."""
    from qsnn_lava.ir import Dense, Layer, LIF, Network, Readout

    rng = np.random.default_rng(7)
    net = Network((6,), [Layer("h", Dense(rng.integers(-30, 31, (5, 6))), LIF(5, vth=20, du=400, dv=300)),
                         Layer("ro", Dense(rng.integers(-40, 41, (3, 5))), Readout(3, du=900, dv=200))], 5).validate()
    b = tmp_path / "b"
    B.write_bundle(net, b, random_spikes(rng, net, 4), {"passed": True}, None, "cpu")
    y = np.load(b / "expected_output.npy")
    assert y.dtype == np.int32 and y.shape == (4, 5, 3) and np.abs(y).max() > 0
    assert B.verify_bundle(b, ("reference", "lava"))["equivalent"]
    y[0, -1, 0] += 1
    np.save(b / "expected_output.npy", y)
    rehash(b, "expected_output.npy")
    res = B.verify_bundle(b, ("reference", "lava"))
    assert not res["equivalent"] and res["bundle"]["mismatches"] == {"reference": 1, "lava": 1}


def test_edited_file_without_hash_update_is_not_equivalent_and_nothing_runs(bundle):
    with h5py.File(bundle / "model.ir.h5", "a") as f:
        f["layers/0/neuron"].attrs["vth"] = 21
    res = B.verify_bundle(bundle)
    assert not res["equivalent"] and res["bundle"]["modified_files"] == ["model.ir.h5"]
    assert res["bundle"]["mismatches"] == {} and "model.ir.h5" in B.report_lines(res)[0]


def test_verify_refuses_missing_and_extra_files(bundle):
    (bundle / "extra.npy").write_bytes(b"x")
    one_line_error(lambda: B.verify_bundle(bundle), "'extra.npy' is in the bundle folder but not")
    (bundle / "extra.npy").unlink()
    (bundle / "expected_output.npy").unlink()
    one_line_error(lambda: B.verify_bundle(bundle), "expected_output.npy is missing")


def test_verify_refuses_bad_backends_and_a_missing_netx(bundle):
    for backends in ((), ("reference", "reference"), ("torch",)):
        one_line_error(lambda: B.verify_bundle(bundle, backends), "give one or more different ones")
    m = manifest(bundle)
    del m["files"]["model.net"]
    m["netx"] = {"file": None, "reason": "netx cannot express it"}
    save_manifest(bundle, m)
    (bundle / "model.net").unlink()
    one_line_error(lambda: B.verify_bundle(bundle, ("netx",)), "has no netx file", "use reference or lava")


@pytest.mark.lava
def test_cli_verify_bundle_compares_with_expected_output(bundle):
    with h5py.File(bundle / "model.ir.h5", "a") as f:
        f["layers/1/neuron"].attrs["vth"] = 1
    rehash(bundle, "model.ir.h5")
    code, out, err = cli("verify", bundle, "-q")
    assert code == 1 and "NOT EQUIVALENT" in out and "Traceback" not in err, out + err
    _set(["netx", "file"], "../outside.net")(bundle)
    code, out, err = cli("verify", bundle, "-q")
    assert code == 2 and "netx.file" in error_line(err)


# ---------------------------------------------------------------- run.py without qsnn-lava
def python_without_qsnn_lava():
    for exe in ("/usr/bin/python3", "/usr/bin/python3.11", shutil.which("python3.11"), shutil.which("python3")):
        if exe and Path(exe).exists() and Path(exe).resolve() != Path(sys.executable).resolve():
            p = subprocess.run([exe, "-I", "-c", "import qsnn_lava"], capture_output=True, timeout=60)
            if p.returncode != 0:
                return exe
    return None


def test_run_py_without_qsnn_lava_says_what_to_run(bundle):
    exe = python_without_qsnn_lava()
    if exe is None:
        pytest.skip("no Python without qsnn-lava on this machine")
    p = subprocess.run([exe, "-I", bundle / "run.py"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr, p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and line.startswith("run.py: error:"), line
    assert sys.executable in line and f"qsnn-lava verify {bundle.resolve()}" in line
    assert manifest(bundle)["interpreter"] == sys.executable


def test_run_py_never_imports_a_module_from_the_bundle_folder(bundle):
    (bundle / "qsnn_lava.py").write_text("raise SystemExit('imported from the bundle folder')\n")
    p = subprocess.run([sys.executable, bundle / "run.py", "--cpu"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "'qsnn_lava.py' is in the bundle folder" in error_line(p.stderr)


# ---------------------------------------------------------------- fuzz: mutated manifests
FUZZ_EXAMPLES = 300
HOSTILE_STRINGS = ["../outside.net", "/etc/passwd", "sub/model.net", "..", ".", "", "model.ir.h5", "manifest.json",
                   "model.net", "a" * 300, "x\x00y", "C:\\outside.net", "~/outside.net", "../secret.txt"]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.sampled_from([0, -1, 10 ** 30, 2 ** 63, 10 ** 400]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(HOSTILE_STRINGS), st.text(max_size=12),
    st.lists(st.integers(-3, 10 ** 9), max_size=4), st.dictionaries(st.sampled_from(HOSTILE_STRINGS), st.integers(), max_size=2),
)


def _key_paths(obj, prefix=(), depth=3):
    """Every key path into a manifest, down to ``depth``."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append(prefix + (k,))
        if depth > 1:
            out += _key_paths(v, prefix + (k,), depth - 1)
    return out


def _mutate(m: dict, op: str, where: tuple, value, name: str):
    m = copy.deepcopy(m)
    parent = m
    for k in where[:-1]:
        parent = parent[k]
    if op == "delete":
        del parent[where[-1]]
    elif op == "set":
        parent[where[-1]] = value
    elif op == "add file":
        m["files"][name] = value if isinstance(value, str) else "0" * 64
    return m


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_manifest_is_accepted_or_refused_in_one_line(source_bundle, fuzz_root, data):
    valid = manifest(source_bundle)
    paths = _key_paths(valid)
    m = valid
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        op = data.draw(st.sampled_from(["delete", "set", "set", "add file"]), label="op")
        where = data.draw(st.sampled_from(_key_paths(m) or paths), label="where")
        try:
            m = _mutate(m, op, where, data.draw(VALUES, label="value"),
                        data.draw(st.sampled_from(HOSTILE_STRINGS), label="name"))
        except (KeyError, IndexError, TypeError):
            pass  # the path no longer exists after an earlier mutation
    text = json.dumps(m)
    truncate = data.draw(st.integers(0, 5), label="truncate?") == 0  # one case in six
    cut = data.draw(st.integers(0, len(text)), label="truncate at") if truncate else None
    with tempfile.TemporaryDirectory(dir=fuzz_root) as d:
        b = Path(d) / "b"
        shutil.copytree(source_bundle, b)
        shutil.copy(b / "model.net", Path(d) / "outside.net")
        (b / "manifest.json").write_text(text if cut is None else text[:cut])
        before = snapshot(Path(d))
        with OPENED.record():
            try:
                checked = B.validate_bundle(b)
                if not B.modified_files(b, checked):
                    B.load_bundle(b, checked)
                event("accepted")
            except QsnnError as e:
                assert "\n" not in str(e) and str(e).startswith(f"bundle '{b}'"), str(e)
                event(f"refused: {str(e)[len(str(b)) + 10:][:40]}")
        assert OPENED.outside(b) == [], OPENED.outside(b)
        assert snapshot(Path(d)) == before
