"""Output paths and options as a careless or unlucky user meets them: refused before any work, one line,
exit 2, no traceback, and nothing the command did not write is changed or left behind."""
import contextlib
import hashlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import qsnn_lava as ql
from qsnn_lava.cli import main
from clicheck import one_error_line


def cli(*args, cwd=None, umask=None):
    """The command in this process (as `qsnn-lava ARGS` runs it): (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_mask = os.getcwd(), os.umask(umask) if umask is not None else None
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse
                code = e.code
    finally:
        os.chdir(old_cwd)
        if old_mask is not None:
            os.umask(old_mask)
    return code, out.getvalue(), err.getvalue()


def tree(folder):
    """{relative path: sha256} of every file below ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel")
    ql.save(ql.train(epochs=1, hidden=[16], timesteps=4), d / "m.pt")
    return d / "m.pt"


def test_output_onto_its_input_is_refused_and_the_input_kept(ckpt):
    before = ckpt.read_bytes()
    one_error_line(*cli("convert", ckpt, "-o", ckpt)[::2], "also an input")
    assert ckpt.read_bytes() == before
    one_error_line(*cli("export-netx", ckpt, "-o", ckpt)[::2], "also an input")
    one_error_line(*cli("prune", ckpt, "--ratio", 0.5, "--out", ckpt, "-q")[::2], "also an input")
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("where, words", [
    ("/sys/m.ir.h5", ("not writable",)),  # a read-only place, even for root
    ("missing/sub/m.ir.h5", ("does not exist",)),
    (".", ("is a folder",)),
])
def test_unwritable_outputs_fail_before_the_work(ckpt, tmp_path, where, words):
    code, _, err = cli("convert", ckpt, "-o", where, cwd=tmp_path)
    one_error_line(code, err, *words)
    assert list(tmp_path.iterdir()) == []


def test_verify_out_problems_are_bad_input_not_mismatch(ckpt, tmp_path):
    (tmp_path / "afile").write_text("mine")
    code, _, err = cli("verify", ckpt, "--backends", "torch,reference", "--samples", 5, "--out", tmp_path / "afile")
    one_error_line(code, err, "a file of that name exists")
    assert (tmp_path / "afile").read_text() == "mine"
    code, _, err = cli("verify", ckpt, "--backends", "torch,reference", "--samples", 5, "--out", "/sys/v")
    one_error_line(code, err, "not writable")


def test_files_qsnn_lava_did_not_write_are_never_overwritten(ckpt, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.json").write_text('{"my": "notes"}')
    before = tree(mine)
    code, _, err = cli("verify", ckpt, "--backends", "torch,reference", "--samples", 5, "--out", mine, "-q")
    one_error_line(code, err, "report.json", "not written by qsnn-lava")
    assert tree(mine) == before
    # a folder qsnn-lava wrote is ours to update
    out = tmp_path / "v"
    for _ in range(2):
        code, _, err = cli("verify", ckpt, "--backends", "torch,reference", "--samples", 5, "--out", out, "-q")
        assert code == 0, err
    assert {"report.json", "report.html", "raster.png", "mismatch_heatmap.png"} <= set(os.listdir(out))


def test_prune_writes_both_files_or_neither(ckpt, tmp_path):
    code, _, err = cli("prune", ckpt, "--ratio", 0.5, "--finetune-epochs", 0, "--out", tmp_path / "p.pt",
                       "--json", "/sys/p.json", "-q")
    one_error_line(code, err, "not writable")
    assert not (tmp_path / "p.pt").exists()


def test_outputs_get_the_users_normal_permissions(ckpt, tmp_path):
    code, _, err = cli("convert", ckpt, "-o", tmp_path / "m.ir.h5", umask=0o022)
    assert code == 0, err
    assert (tmp_path / "m.ir.h5").stat().st_mode & 0o777 == 0o644
    code, _, err = cli("verify", ckpt, "--backends", "torch,reference", "--samples", 5, "--out", tmp_path / "v",
                       "-q", umask=0o022)
    assert code == 0, err
    assert (tmp_path / "v").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "v" / "report.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("args, words", [
    (("train", "--epochs", 0), ("epochs = 0",)),
    (("train", "--epochs", -2), ("epochs = -2",)),
    (("train", "--batch-size", 0), ("batch_size = 0",)),
    (("train", "--lr", "nan"), ("lr = nan", "finite")),
    (("train", "--theta", -1), ("theta = -1",)),
    (("train", "--quant", "fancy"), ("quantizer 'fancy'",)),
])
def test_bad_training_options(tmp_path, args, words):
    code, _, err = cli(*args, "--out", tmp_path / "m.pt", "-q")
    one_error_line(code, err, *words)
    assert list(tmp_path.iterdir()) == []


def test_bad_run_options(ckpt, tmp_path):
    one_error_line(*cli("energy", ckpt, "--tables", "foo", "--samples", 3)[::2], "cost table 'foo'")
    one_error_line(*cli("verify", ckpt, "--backends", "reference,reference", "--samples", 3)[::2],
                   "proves nothing")
    one_error_line(*cli("verify", ckpt, "--samples", 0)[::2], "samples")


def test_structured_input_array_is_refused(ckpt, tmp_path):
    code, _, err = cli("convert", ckpt, "-o", tmp_path / "m.h5")
    assert code == 0, err
    np.save(tmp_path / "x.npy", np.zeros((2, 4), dtype=[("a", "u1"), ("b", "f4")]))
    code, _, err = cli("simulate", tmp_path / "m.h5", "--input", tmp_path / "x.npy")
    one_error_line(code, err, "x.npy")


def test_help_shows_defaults_and_is_quick():
    code, out, _ = cli("train", "--help")
    assert code == 0
    assert "(default: 30)" in out and "(default: 4)" in out and "(default: 8)" in out
    code, out, _ = cli("simulate", "--help")
    assert "(default: reference)" in out
    code, out, _ = cli("deploy", "--help")
    assert "--quiet" in out
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "qsnn_lava.cli", "--help"],
                       capture_output=True, text=True)
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "lava" not in imported  # --help never imports torch or Lava
