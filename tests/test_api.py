"""The Python API: the whole journey through `import qsnn_lava as ql` only, and its contract (names,
docstrings with examples that run, errors instead of prints and exits)."""
import doctest
import inspect
import json

import numpy as np
import pytest

import qsnn_lava as ql


@pytest.fixture(scope="module")
def model():
    return ql.train(dataset="digits", epochs=2, hidden=[32], timesteps=6, seed=1)


@pytest.mark.lava
def test_the_whole_journey_through_the_api(model, tmp_path, capsys):
    assert model.history["test_acc"][-1] > 0.5 and model.meta["dataset"] == "digits"
    ql.save(model, tmp_path / "m.pt")
    again = ql.load(tmp_path / "m.pt")
    assert again.config == model.config and again.meta["test_accuracy"] == model.meta["test_accuracy"]

    net = ql.convert(again)
    assert isinstance(net, ql.Network) and [layer.neuron.n for layer in net.layers] == [32, 10]
    ql.save(net, tmp_path / "m.ir.h5")
    net = ql.load(tmp_path / "m.ir.h5")

    x, y = ql.encode(ql.load_dataset("digits", timesteps=6).test, timesteps=6, samples=12)
    ref = ql.simulate(net, x, backend="reference")
    lava = ql.simulate(net, x, backend="lava", workers=2)  # two Lava processes, six samples each
    assert all(np.array_equal(a, b) for a, b in zip(ref.spikes, lava.spikes))
    threads = ql.simulate(net, x, backend="reference", workers=3)
    assert all(np.array_equal(a, b) for a, b in zip(ref.spikes, threads.spikes))

    res = ql.verify(tmp_path / "m.pt", samples=12)
    assert res.equivalent and res.report["spike_mismatches"] == {"trained_vs_reference": 0, "reference_vs_lava": 0}
    files = res.save(tmp_path / "verify")
    assert json.loads(files[0].read_text())["equivalent"] is True

    dep = ql.deploy(net, out=tmp_path / "bundle", samples=3)
    assert dep.status == 0 and dep.drc["passed"] and (tmp_path / "bundle" / "manifest.json").is_file()
    assert ql.verify(tmp_path / "bundle").equivalent

    rep = ql.energy(net, samples=12, tables=("cmos45_snn", "ann_int8"))
    assert rep.counts["samples"] == 12 and [r["table"] for r in rep.results] == ["cmos45_snn", "ann_int8"]
    assert rep.to_dict()["energy"][0]["total"]["uJ"] > 0

    small = ql.prune(again, criterion="svs", ratio=0.5, finetune_epochs=1, samples=60)
    assert small.config["sizes"] == [64, 16, 10]
    s = small.pruning["summary"]
    assert s["after"]["total"]["synops"] < s["before"]["total"]["synops"]
    assert ql.verify(small, samples=12, backends=("torch", "reference")).equivalent
    assert capsys.readouterr() == ("", "")  # the API never prints


def test_bad_input_raises_qsnn_error_and_never_exits(model, tmp_path):
    cases = [
        lambda: ql.train(epochs=0), lambda: ql.train(epochs=-3), lambda: ql.train(batch_size=0),
        lambda: ql.train(lr=float("nan")), lambda: ql.train(theta=-1.0, epochs=1),
        lambda: ql.energy(model, tables=("foo",)),
        lambda: ql.verify(model, backends=("reference", "reference")),
        lambda: ql.verify(model, backends=("reference",)),
        lambda: ql.simulate(model, backend="gpu"),
        lambda: ql.simulate(model, workers=0), lambda: ql.verify(model, workers=1.5),
        lambda: ql.load(tmp_path / "missing.pt"),
        lambda: ql.load(tmp_path),
        lambda: ql.save(object(), tmp_path / "x"),
    ]
    for case in cases:
        with pytest.raises(ql.QsnnError):
            case()


def test_output_onto_its_own_input_is_refused(tmp_path, model):
    ql.save(model, tmp_path / "m.pt")
    before = (tmp_path / "m.pt").read_bytes()
    with pytest.raises(ql.QsnnError, match="also an input"):
        ql.export_netx(tmp_path / "m.pt", tmp_path / "m.pt")
    assert (tmp_path / "m.pt").read_bytes() == before


def test_public_names_are_documented_with_examples_that_run():
    missing = []
    for name in ql.__all__:
        obj = getattr(ql, name)
        if name.startswith("__"):
            continue
        doc = inspect.getdoc(obj) or ""
        if not doc:
            missing.append(name)
        needs_example = inspect.isfunction(obj) or inspect.isclass(obj)
        if needs_example and "Example:" not in doc:
            missing.append(f"{name} (no Example:)")
    assert not missing, missing
    import qsnn_lava.api
    import qsnn_lava.errors
    import qsnn_lava.io
    import qsnn_lava.ir
    import qsnn_lava.record

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for module in (ql, qsnn_lava.api, qsnn_lava.io, qsnn_lava.errors, qsnn_lava.ir, qsnn_lava.record):
        result = doctest.testmod(module, optionflags=flags)
        assert result.failed == 0, f"{module.__name__}: {result}"
        assert result.attempted > 0


@pytest.mark.lava
def test_tutorial_notebook_runs(tmp_path, monkeypatch):
    """Every code cell of docs/tutorial.ipynb, in order, in one namespace (as a kernel would run them)."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    nb = json.loads((Path(__file__).parents[1] / "docs" / "tutorial.ipynb").read_text())
    monkeypatch.chdir(tmp_path)
    namespace = {}
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 5
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"tutorial cell {i}", "exec"), namespace)
    assert namespace["res"].equivalent and namespace["dep"].status == 0
    assert (tmp_path / "tutorial_bundle" / "manifest.json").is_file()


def test_nir_round_trip_through_the_cli(model, tmp_path):
    from clicheck import one_error_line

    from qsnn_lava.cli import main

    ql.save(model, tmp_path / "m.pt")
    assert main(["export-nir", str(tmp_path / "m.pt"), "-o", str(tmp_path / "m.nir")]) == 0
    assert main(["import-nir", str(tmp_path / "m.nir"), "-o", str(tmp_path / "back.h5"),
                 "--report", str(tmp_path / "r.json")]) == 0
    a, b = ql.convert(model), ql.load(tmp_path / "back.h5")
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la.synapse.weight, lb.synapse.weight) and la.synapse.weight_exp == lb.synapse.weight_exp
        assert (la.neuron.vth, la.neuron.du, la.neuron.dv) == (lb.neuron.vth, lb.neuron.du, lb.neuron.dv)
    assert json.loads((tmp_path / "r.json").read_text())["exact"] is True
    x, _ = ql.encode(ql.load_dataset("digits", timesteps=6).test, 6, samples=20)
    assert np.array_equal(ql.simulate(a, x).spikes[-1], ql.simulate(b, x).spikes[-1])
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["import-nir", str(tmp_path / "m.pt"), "-o", str(tmp_path / "x.h5"), "--dt", "0.001"])
    one_error_line(code, err.getvalue(), "not an HDF5 file")
    assert not (tmp_path / "x.h5").exists()
