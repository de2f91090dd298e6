"""The ``qsnn-lava`` command: train, convert, simulate, verify, and the end-to-end demo.

Exit codes: 0 success (verify: equivalent), 1 verify found mismatches, 2 bad input (one line on
stderr, no traceback, no partial output file), 3 deploy --target loihi2 without lava-loihi (the bundle
is written), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .data import DATASETS
from .quantizers import QUANT_NAMES
from .errors import QsnnError, Terminated

EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2


# ---------------------------------------------------------------- shared pieces
def load_target(path, validate: bool = True):
    """A checkpoint, an IR file or a bundle folder -> (Network, eval model or None)."""
    from qsnn_lava.converters.checkpoint import load_model, model_to_ir
    from qsnn_lava.deploy.bundle import is_bundle
    from .io import is_hdf5
    from .ir import Network

    p = Path(path)
    if is_bundle(p):
        p = p / "model.ir.h5"
    if not p.is_file():
        raise QsnnError(f"'{path}' not found; pass a checkpoint (qsnn-lava train), an IR (qsnn-lava convert) "
                        "or a bundle (qsnn-lava deploy)")
    if is_hdf5(p):
        return Network.load(p, validate=validate), None
    model, ckpt = load_model(p)
    try:
        return model_to_ir(model, {"dataset": ckpt.get("meta", {}).get("dataset", "")}, validate=validate), model
    except QsnnError as e:
        raise QsnnError(f"'{path}': {e}") from None


def dataset_inputs(net, args):
    """Test inputs and labels of the dataset named in ``args`` (dataset, data_dir, denoise, samples)."""
    from .data import encoded, load_dataset

    data = load_dataset(args.dataset, args.data_dir, net.timesteps, args.denoise)
    if data.n_in != net.n_in:
        raise QsnnError(f"dataset '{args.dataset}' has {data.n_in} inputs but the network takes {net.n_in}")
    return encoded(data.test, net.timesteps, args.samples)


def run_backends(net, model, spikes, backends: list[str], progress: bool):
    from qsnn_lava.deploy.backends import get_backend
    from .training import evaluate

    records = []
    for name in backends:
        if name == "torch":
            if model is None:
                raise QsnnError("the torch backend needs the checkpoint: pass CKPT, or drop torch from --backends")
            rec = evaluate(model, spikes)
        else:
            rec = get_backend(name)(net, spikes, progress=progress)
        records.append(rec)
    return records


def print_report(rep: dict) -> None:
    for k, v in rep["accuracy"].items():
        print(f"  accuracy {k:<10} {100 * v:6.2f} %  ({rep['samples_per_backend'][k]} samples)")
    for k, c in rep["comparisons"].items():
        line = f"  spikes   {k:<24} {c['mismatches']} mismatches over {c['samples']} samples"
        if c["first_divergence"]:
            fd = c["first_divergence"]
            line += (f"; first at sample {fd['sample']}, layer {fd['layer']}, neuron {fd['neuron']}, "
                     f"step {fd['timestep']}")
        print(line)
    print("  EQUIVALENT" if rep["equivalent"] else "  NOT EQUIVALENT")


# ---------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from .data import load_dataset
    from .io import save_checkpoint
    from .models import make_config
    from .training import train

    resume = None
    if args.resume:
        from .io import load_checkpoint

        resume = load_checkpoint(args.resume)
        if "training" not in resume:
            raise QsnnError(f"'{args.resume}' has no training state (it was saved at the end of a run, or by "
                            "an older qsnn-lava); it can be converted, not resumed")
        cfg, meta = resume["config"], resume["meta"]
        args.dataset, args.seed = meta.get("dataset", args.dataset), meta.get("seed", args.seed)
        args.lr, args.batch_size = meta.get("lr", args.lr), meta.get("batch_size", args.batch_size)
        data = load_dataset(args.dataset, args.data_dir, int(cfg["timesteps"]), args.denoise)
    else:
        data = load_dataset(args.dataset, args.data_dir, args.timesteps, args.denoise)
        shape = data.shape if args.arch != "mlp" else None
        sizes = [data.n_in, *args.hidden, data.n_classes] if args.arch == "mlp" else [data.n_in, data.n_classes]
        cfg = make_config(arch=args.arch, sizes=sizes, input_shape=shape, channels=args.channels, bn=args.bn,
                          quant=args.quant, bits=args.bits, first_bits=args.first_bits, last_bits=args.last_bits,
                          theta=args.theta, timesteps=args.timesteps,
                          neuron=args.neuron, mem_bits=args.mem_bits, bias_exp_min=args.bias_exp_min)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": args.dataset, "epochs": args.epochs, "seed": args.seed, "lr": args.lr,
            "batch_size": args.batch_size}

    last = {"state": resume.get("training") if resume else None}

    def checkpoint_epoch(model, state):  # an interrupted run resumes from the last finished epoch
        last["state"] = state
        save_checkpoint(args.out, cfg, model.state_dict(), meta, training=state)

    model, hist = train(cfg, data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                        progress=not args.quiet, resume=resume, on_epoch=checkpoint_epoch)
    util = model.utilisation()
    save_checkpoint(args.out, cfg, model.state_dict(),
                    {**meta, "test_accuracy": hist["test_acc"][-1], "train_seconds": hist["seconds"],
                     "utilisation": util}, training=last["state"])
    print(f"trained {args.epochs} epochs in {hist['seconds']:.1f} s: test accuracy "
          f"{100 * hist['test_acc'][-1]:.2f} % (integer eval model) -> {args.out}")
    print("bit-width utilisation (QP-SNN Eq. 8): " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in util.items()))
    return 0


def cmd_convert(args) -> int:
    from qsnn_lava.converters.checkpoint import checkpoint_to_ir

    net = checkpoint_to_ir(args.checkpoint)
    net.save(args.output)
    sizes = " -> ".join([str(net.n_in)] + [str(layer.neuron.n) for layer in net.layers])
    print(f"converted {args.checkpoint} -> {args.output}: {sizes}, T = {net.timesteps}")
    cpu_only = [layer.name for layer in net.layers if layer.neuron.type != "lif"]
    if cpu_only:
        print(f"note: {', '.join(cpu_only)} use the {net.layers[0].neuron.type} neuron, which Loihi 2 cannot run: "
              "CPU only (Lava simulation); `deploy --target loihi2` refuses this network")
    return 0


def _read_input(path, net) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise QsnnError(f"input spikes '{path}' not found")
    try:
        x = np.load(p, allow_pickle=False)
    except Exception as e:
        raise QsnnError(f"'{path}' is not a .npy array ({e.__class__.__name__})") from None
    shape = tuple(net.input_shape)
    if len(shape) > 1 and x.shape[-len(shape):] == shape:  # [T, C, H, W] or [N, T, C, H, W]: flatten
        x = x.reshape(*x.shape[:-len(shape)], net.n_in)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != net.timesteps or x.shape[2] != net.n_in:
        dims = ", ".join(map(str, shape))
        raise QsnnError(f"'{path}' has shape {x.shape}; expected [T={net.timesteps}, {dims}] or "
                        f"[N, {net.timesteps}, {dims}] (the input may also be flat, {net.n_in} wide)")
    if not np.isin(x, (0, 1)).all():
        raise QsnnError(f"'{path}' must hold binary spikes (0/1)")
    return np.ascontiguousarray(np.transpose(x.astype(np.uint8), (1, 0, 2)))  # -> [T, N, n_in]


def cmd_simulate(args) -> int:
    from qsnn_lava.deploy.backends import get_backend
    from .io import atomic_write
    from .ir import Network

    net = Network.load(args.ir)
    labels = None
    if args.input:
        spikes = _read_input(args.input, net)
    else:
        spikes, labels = dataset_inputs(net, args)
    rec = get_backend(args.backend)(net, spikes, progress=not args.quiet)
    msg = f"{args.backend}: {rec.samples} samples in {rec.info['seconds']:.2f} s"
    if labels is not None:
        msg += f", accuracy {100 * rec.accuracy(labels):.2f} %"
    print(msg)
    if args.output:
        out = np.transpose(rec.spikes[-1], (1, 0, 2))  # [N, T, n_out]
        with atomic_write(args.output) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, out)
        print(f"output spikes [N, T, n] {out.shape} -> {args.output}")
    return 0


def _backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    known = ("torch", "reference", "lava")
    bad = [b for b in names if b not in known]
    if bad or len(names) < 2:
        raise QsnnError(f"--backends needs two or more of {', '.join(known)}; got '{text}'")
    return names


def cmd_verify(args) -> int:
    from qsnn_lava.deploy.bundle import is_bundle, modified_files
    from qsnn_lava.deploy.verify import report
    from .bounds import flagged, static_bounds

    if is_bundle(args.target):
        bad = modified_files(args.target)
        if bad:
            print(f"verify {args.target}: files changed since deployment (sha256 differs from the manifest): "
                  f"{', '.join(bad)}")
            print("  NOT EQUIVALENT")
            return EXIT_MISMATCH
        print(f"bundle {args.target}: every file matches its manifest hash")
    net, model = load_target(args.target)
    if args.backends is None:
        args.backends = "torch,reference,lava" if (model is not None or args.against) else "reference,lava"
    backends = _backends(args.backends)
    if args.against:
        if model is not None:
            raise QsnnError("--against compares an IR with its checkpoint: pass the IR as the target")
        from qsnn_lava.converters.checkpoint import load_model
        model, _ = load_model(args.against)
        if [layer.neuron.n for layer in model.layers] != [layer.neuron.n for layer in net.layers]:
            raise QsnnError(f"'{args.target}' and '{args.against}' have different layer sizes")
    bounds = static_bounds(net)
    for name in flagged(bounds):
        b = bounds[name]
        print(f"  warning: layer {name} can {'wrap u' if b['u_can_wrap'] else ''}"
              f"{' and ' if b['u_can_wrap'] and b['v_can_saturate'] else ''}"
              f"{'saturate v' if b['v_can_saturate'] else ''} (worst case |u| <= {b['u_bound']}, "
              f"|v| <= {b['v_bound']}; 24-bit limit 8388608)")
    spikes, labels = dataset_inputs(net, args)
    records = run_backends(net, model, spikes, backends, progress=not args.quiet)
    rep = report(records, labels)
    rep["overflow"] = {"static": bounds,
                       "runtime": next((r.info["overflow"] for r in records if "overflow" in r.info), None)}
    if not rep["equivalent"]:
        _diagnose(rep, net, model, spikes, records)
    print(f"verify {args.target}{' against ' + args.against if args.against else ''}: {', '.join(backends)} "
          f"on {rep['samples']} {args.dataset} test samples")
    print_report(rep)
    if args.out:
        _write_verify_outputs(rep, records, spikes, Path(args.out))
    return 0 if rep["equivalent"] else EXIT_MISMATCH


def _diagnose(rep, net, model, spikes, records) -> None:
    from qsnn_lava.converters.checkpoint import model_to_ir
    from qsnn_lava.deploy.backends.lava import trace as lava_trace
    from qsnn_lava.deploy.verify import diagnose
    from .reference import trace as ref_trace

    torch_net = model_to_ir(model) if model is not None else None
    tracers = {"torch": lambda n, s, li: ref_trace(torch_net, s, li), "reference": ref_trace, "lava": lava_trace}
    for (key, comp), (a, b) in zip(rep["comparisons"].items(), zip(records[:-1], records[1:])):
        if comp["first_divergence"]:
            comp["diagnosis"] = diagnose(net, spikes, comp["first_divergence"], tracers[a.backend],
                                         tracers[b.backend])
            print(f"  {key}: likely cause: {comp['diagnosis']['likely_cause']}")


def _write_verify_outputs(rep, records, spikes, out: Path) -> None:
    from qsnn_lava.deploy.plots import html_report, mismatch_heatmap, raster
    from .io import write_json

    out.mkdir(parents=True, exist_ok=True)
    first = next((c["first_divergence"] for c in rep["comparisons"].values() if c["first_divergence"]), None)
    sample = first["sample"] if first else 0
    raster(records, spikes, out / "raster.png", sample=sample)
    mismatch_heatmap(records, out / "mismatch_heatmap.png")
    write_json(out / "report.json", rep)
    html_report(rep, {f"Spike rasters, sample {sample}": out / "raster.png",
                      "Mismatches per layer and time step": out / "mismatch_heatmap.png"}, out / "report.html")
    print(f"wrote {out / 'report.json'}, {out / 'report.html'}")


def cmd_deploy(args) -> int:
    from qsnn_lava.deploy.bundle import EXIT_NO_LOIHI, loihi_installed, run_bundle, write_bundle
    from qsnn_lava.deploy.drc import design_rule_check, format_violations

    net, _ = load_target(args.target, validate=False)
    drc = design_rule_check(net, cpu=args.target_kind == "cpu")
    if not drc["passed"]:
        raise QsnnError(f"'{args.target}' breaks {len(drc['violations'])} Loihi 2 design rule(s); no bundle "
                        f"written:\n{format_violations(drc)}")
    print(f"design rules: passed ({len(drc['rules'])} rules, {len(net.layers)} layers)")
    resources = _resources(net, args.chip_model)
    spikes, _ = dataset_inputs(net, args)
    manifest = write_bundle(net, args.out, spikes, drc, resources, args.target_kind)
    netx = manifest["netx"]["file"] or f"none ({manifest['netx']['reason']})"
    print(f"bundle {args.out}: IR, netx {netx}, manifest, run.py, {spikes.shape[1]} sample inputs")
    if args.target_kind == "loihi2":
        if not loihi_installed():
            print(f"qsnn-lava: Loihi 2 not available: Intel's lava-loihi extension is not installed (it is "
                  f"distributed to INRC members only). The bundle is ready in '{args.out}': copy it to a "
                  f"system with lava-loihi and run `python {args.out}/run.py`.", file=sys.stderr)
            return EXIT_NO_LOIHI
        return run_bundle(args.out, hardware=True)
    return run_bundle(args.out, hardware=False)


def _resources(net, chip_json):
    from qsnn_lava.deploy.resources import ChipModel, estimate, format_table, shapes_from_ir

    chip = ChipModel.from_json(chip_json) if chip_json else ChipModel()
    est = estimate(shapes_from_ir(net), chip)
    print(format_table(est))
    return est


def cmd_export_netx(args) -> int:
    from qsnn_lava.converters.netx import export_netx

    net, _ = load_target(args.target)
    export_netx(net, args.output)
    print(f"exported {args.target} -> {args.output} (lava-dl netx HDF5; load it with "
          f"lava.lib.dl.netx.hdf5.Network(path, reset_interval={net.timesteps}, reset_offset=1))")
    return 0


def cmd_import_netx(args) -> int:
    from qsnn_lava.converters.netx import import_netx

    net = import_netx(args.netx, args.timesteps)
    net.save(args.output)
    sizes = " -> ".join([str(net.n_in)] + [str(layer.neuron.n) for layer in net.layers])
    print(f"imported {args.netx} -> {args.output}: {sizes}, T = {net.timesteps}")
    return 0


def cmd_energy(args) -> int:
    from qsnn_lava.deploy.backends import get_backend
    from qsnn_lava.deploy.energy import (TABLES, compare_table, count_ops, energy, energy_bar_chart, load_cost_table,
                               neurobench_metrics)
    from .io import write_json

    net, _ = load_target(args.target)
    spikes, _ = dataset_inputs(net, args)
    counts = count_ops(net, spikes, get_backend("reference")(net, spikes, progress=not args.quiet))
    if args.check_lava:
        lava_counts = count_ops(net, spikes, get_backend("lava")(net, spikes, progress=not args.quiet))
        same = lava_counts == counts
        print(f"operation counts from Lava {'equal' if same else 'DIFFER from'} the reference's")
        if not same:
            return EXIT_MISMATCH
    tables = [TABLES[name] for name in args.tables.split(",") if name] + [load_cost_table(p) for p in args.cost_table]
    results = [energy(counts, t) for t in tables]
    print(f"energy per inference, {counts['samples']} {args.dataset} samples (estimates from operation counts):")
    print(compare_table(results))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "energy.json", {"counts": counts, "neurobench": neurobench_metrics(counts),
                                         "energy": results})
        energy_bar_chart(results, out / "energy.png")
        print(f"wrote {out / 'energy.json'}, {out / 'energy.png'}")
    return 0


def cmd_demo(args) -> int:
    from qsnn_lava.converters.checkpoint import checkpoint_to_ir
    from qsnn_lava.deploy.plots import raster
    from qsnn_lava.deploy.verify import report
    from .data import encoded, load_dataset
    from .io import save_checkpoint, write_json
    from .ir import Network
    from .models import make_config
    from .training import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    cfg = make_config(sizes=[data.n_in, 256, data.n_classes], bits=4, timesteps=8)
    print(f"[1/4] training a {'-'.join(map(str, cfg['sizes']))} QSNN, {cfg['bits']}-bit {cfg['quant']} "
          f"weights, hard-reset LIF, T = {cfg['timesteps']}, on digits ({len(data.train.y)} train samples)")
    model, hist = train(cfg, data, epochs=args.epochs, seed=args.seed, progress=not args.quiet)
    ckpt = out / "model.pt"
    save_checkpoint(ckpt, cfg, model.state_dict(), {"dataset": "digits", "epochs": args.epochs,
                                                      "seed": args.seed, "test_accuracy": hist["test_acc"][-1]})
    print(f"[2/4] converting {ckpt} -> IR")
    ir_path = out / "model.ir.h5"
    checkpoint_to_ir(ckpt).save(ir_path)
    net = Network.load(ir_path)  # what is deployed is what was written
    spikes, labels = encoded(data.test, net.timesteps)
    n_lava = min(args.lava_samples, spikes.shape[1])
    print(f"[3/4] running torch (eval), reference and Lava fixed_pt on {spikes.shape[1]} test samples "
          f"(Lava: {n_lava})")
    records = run_backends(net, model, spikes, ["torch", "reference"], progress=not args.quiet)
    records += run_backends(net, None, spikes[:, :n_lava], ["lava"], progress=not args.quiet)
    rep = report(records, labels)
    rep["train"] = {"epochs": args.epochs, "seconds": round(hist["seconds"], 2),
                    "test_accuracy_per_epoch": hist["test_acc"]}
    rep["network"] = {"sizes": cfg["sizes"], "bits": cfg["bits"], "quant": cfg["quant"],
                      "timesteps": cfg["timesteps"], "vth": [layer.neuron.vth for layer in net.layers],
                      "du": cfg["du"], "dv": cfg["dv"]}
    rep["files"] = {"checkpoint": str(ckpt), "ir": str(ir_path), "raster": str(out / "raster.png")}
    print("[4/4] verifying")
    print_report(rep)
    write_json(out / "report.json", rep)
    raster([records[0], records[-1]], spikes, out / "raster.png")
    print(f"wrote {out / 'report.json'}, {out / 'raster.png'}, {ckpt}, {ir_path}")
    return 0 if rep["equivalent"] else EXIT_MISMATCH


def cmd_prune(args) -> int:
    """Score, prune, fine-tune, save; prints the summary table (docs/pruning.md)."""
    import hashlib

    from qsnn_lava.converters.checkpoint import load_model
    from .data import encoded, load_dataset
    from .io import save_checkpoint, write_json
    from .pruning import (finetune, format_summary, parse_ratios, plan, prune_model, score_channels,
                          scoring_batches, stability, summarize)
    from .training import evaluate

    ratios = parse_ratios(args.ratio, args.ratios)
    if args.finetune_epochs < 0:
        raise QsnnError("--finetune-epochs must be >= 0")
    model, ckpt = load_model(args.checkpoint)
    plan(model, ratios)  # every ratio error before any data is read
    T = int(model.config["timesteps"])
    dataset = args.dataset or ckpt.get("meta", {}).get("dataset") or "digits"
    data = load_dataset(dataset, args.data_dir, T, args.denoise)
    if data.n_in != int(model.config["sizes"][0]) or data.n_classes != int(model.config["sizes"][-1]):
        raise QsnnError(f"dataset '{dataset}' has {data.n_in} inputs and {data.n_classes} classes; the network "
                        f"takes {model.config['sizes'][0]} and has {model.config['sizes'][-1]} outputs")
    batches = scoring_batches(data, T, args.batches, args.batch_size, args.seed)
    scores = score_channels(model, batches, args.criterion, args.seed)
    pruned, groups = prune_model(model, scores, ratios)
    x, y = encoded(data.test, T, args.samples)
    acc_before = evaluate(model, x).accuracy(y)
    acc_pruned = evaluate(pruned, x).accuracy(y)
    hist = None
    if args.finetune_epochs > 0:
        pruned, hist = finetune(pruned, data, args.finetune_epochs, args.lr, args.batch_size, args.seed,
                                args.train_samples, int(ckpt.get("meta", {}).get("epochs", 0) or 0),
                                progress=not args.quiet)
    acc_after = evaluate(pruned, x).accuracy(y)
    n_sum = min(args.synops_samples, x.shape[1])
    before, after = summarize(model, x[:, :n_sum]), summarize(pruned, x[:, :n_sum])
    result = {
        "checkpoint": str(args.checkpoint), "out": str(args.out), "dataset": dataset,
        "criterion": args.criterion, "batches": args.batches, "batch_size": args.batch_size, "seed": args.seed,
        "groups": [{"layers": g["layers"], "ratio": g["ratio"], "before": g["width"], "after": g["keep"],
                    "kept": [int(i) for i in g["kept"]],
                    "score_stability": stability(s["per_batch"])} for g, s in zip(groups, scores)],
        "finetune": {"epochs": args.finetune_epochs, "lr": args.lr, "train_samples": args.train_samples,
                     "test_accuracy_per_epoch": hist["test_acc"] if hist else [],
                     "seconds": hist["seconds"] if hist else 0.0},
        "accuracy": {"before": acc_before, "pruned": acc_pruned, "finetuned": acc_after, "samples": int(x.shape[1])},
        "summary": {"before": before, "after": after},
        "config": pruned.config,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(Path(args.checkpoint).read_bytes()).hexdigest()
    meta = {**{k: v for k, v in ckpt.get("meta", {}).items() if k not in ("test_accuracy", "pruning")},
            "dataset": dataset, "test_accuracy": acc_after,
            "pruning": {"source_checkpoint_sha256": digest, "criterion": args.criterion,
                        "ratios": [g["ratio"] for g in groups], "finetune_epochs": args.finetune_epochs,
                        "widths": {"+".join(g["layers"]): [g["width"], g["keep"]] for g in groups},
                        "accuracy_before": acc_before}}
    save_checkpoint(args.out, pruned.config, pruned.state_dict(), meta)
    what = ", ".join(f"{'+'.join(g['layers'])} {g['ratio']:g}" for g in groups)
    print(f"pruned {args.checkpoint} by {args.criterion} ({what}), fine-tuned {args.finetune_epochs} epochs "
          f"-> {args.out}")
    print(format_summary(before, after))
    print(f"accuracy on {x.shape[1]} {dataset} test samples: {100 * acc_before:.2f} % before, "
          f"{100 * acc_pruned:.2f} % pruned, {100 * acc_after:.2f} % fine-tuned; SynOps and spikes per inference "
          f"on {n_sum} samples")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qsnn-lava", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train, convert, run on torch/reference/Lava and verify, on digits")
    d.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    d.add_argument("--epochs", type=int, default=30)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--lava-samples", type=int, default=360, help="test samples run through Lava")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train a QSNN and save a checkpoint")
    t.add_argument("--dataset", default="digits", choices=DATASETS)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--out", required=True, help="checkpoint path (.pt)")
    t.add_argument("--arch", default="mlp", choices=["mlp", "vgg", "resnet"],
                   help="mlp: dense layers (--hidden); vgg: conv-pool-conv-pool-fc; resnet: conv stem, two "
                        "residual blocks, fc (conv nets need an image dataset; see docs/architectures.md)")
    t.add_argument("--channels", type=int, nargs=2, default=None, help="conv archs: the two stage widths")
    t.add_argument("--bn", action=argparse.BooleanOptionalAction, default=None,
                   help="conv archs: BatchNorm folded into integer weights and biases (default on)")
    t.add_argument("--bias-exp-min", type=int, default=None,
                   help="conv archs with --bn: smallest exponent of the folded bias; 6 keeps biases in whole "
                        "weight units, which lava-dl netx files require (export-netx)")
    t.add_argument("--hidden", type=int, nargs="+", default=[256], help="hidden layer widths")
    t.add_argument("--quant", default="uniform", choices=QUANT_NAMES,
                   help="uniform: QP-SNN Eqs. 4-6; rescaw: QP-SNN ReScaW (theta counts in units of gamma); "
                        "sigmoid: sigmoid-sum quantizer (--bits 1 = binary); ternary: sigmoid-sum {-1, 0, 1}")
    t.add_argument("--bits", type=int, default=4)
    t.add_argument("--first-bits", type=int, default=None, help="weight bits of the first layer (default --bits)")
    t.add_argument("--last-bits", type=int, default=None, help="weight bits of the last layer (default --bits)")
    t.add_argument("--neuron", default="lif", choices=["lif", "mfp", "qmem"],
                   help="lif: QP-SNN hard-reset LIF; mfp: memory-free neuron trained in parallel over time; "
                        "qmem: LIF with a --mem-bits stored membrane (CPU only, not deployable to Loihi)")
    t.add_argument("--mem-bits", type=int, default=None, help="qmem: bits of the stored membrane (2..8)")
    t.add_argument("--theta", type=float, default=None,
                   help="threshold in real weight units (default 2 for mlp, 1 for conv archs)")
    t.add_argument("--resume", help="continue the interrupted run saved in this checkpoint (--out may be it)")
    t.add_argument("--timesteps", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-2)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("convert", help="checkpoint -> IR (versioned HDF5)")
    c.add_argument("checkpoint")
    c.add_argument("-o", "--output", required=True)
    c.set_defaults(func=cmd_convert)

    s = sub.add_parser("simulate", help="run an IR on a backend")
    s.add_argument("ir")
    s.add_argument("--backend", default="reference", choices=["reference", "lava"])
    s.add_argument("--dataset", default="digits", choices=DATASETS)
    s.add_argument("--samples", type=int, default=None)
    s.add_argument("--input", help="input spikes .npy, [T, n_in] or [N, T, n_in]")
    s.add_argument("--output", help="write the output layer's spikes [N, T, n] as .npy")
    s.set_defaults(func=cmd_simulate)

    v = sub.add_parser("verify", help="compare backends spike by spike (exit 0 equal, 1 not, 2 bad input)")
    v.add_argument("target", metavar="CKPT_IR_OR_BUNDLE")
    v.add_argument("--dataset", default="digits", choices=DATASETS)
    v.add_argument("--samples", type=int, default=None)
    v.add_argument("--backends", default=None,
                   help="default torch,reference,lava for a checkpoint or with --against, else reference,lava")
    v.add_argument("--against", metavar="CKPT", help="compare an IR with the checkpoint it came from "
                   "(torch side from CKPT, reference and Lava from the IR)")
    v.add_argument("--out", help="directory for report.json, report.html and plots")
    v.set_defaults(func=cmd_verify)

    dp = sub.add_parser("deploy", help="design-rule check, resource estimate and a deployment bundle")
    dp.add_argument("target", metavar="IR_OR_CKPT")
    dp.add_argument("--target", dest="target_kind", choices=["cpu", "loihi2"], default="cpu",
                    help="cpu: run the bundle on Lava's CPU models; loihi2: on the chip (needs lava-loihi; "
                         "exit code 3 when it is missing)")
    dp.add_argument("--out", required=True, help="bundle folder")
    dp.add_argument("--dataset", default="digits", choices=DATASETS, help="where the sample inputs come from")
    dp.add_argument("--samples", type=int, default=8, help="sample inputs stored in the bundle")
    dp.add_argument("--chip-model", help="JSON file overriding the resource model's parameters")
    dp.set_defaults(func=cmd_deploy)

    x = sub.add_parser("export-netx", help="IR or checkpoint -> lava-dl netx HDF5 (dense networks)")
    x.add_argument("target", metavar="IR_OR_CKPT")
    x.add_argument("-o", "--output", required=True)
    x.set_defaults(func=cmd_export_netx)

    im = sub.add_parser("import-netx", help="lava-dl netx HDF5 (CUBA dense layers) -> IR")
    im.add_argument("netx", metavar="NET")
    im.add_argument("-o", "--output", required=True)
    im.add_argument("--timesteps", type=int, required=True, help="time steps per sample (netx files carry none)")
    im.set_defaults(func=cmd_import_netx)

    e = sub.add_parser("energy", help="operation counts from simulation and energy per inference by cost table")
    e.add_argument("target", metavar="IR_OR_CKPT")
    e.add_argument("--dataset", default="digits", choices=DATASETS)
    e.add_argument("--samples", type=int, default=None)
    e.add_argument("--tables", default="loihi1,cmos45_snn,ann_fp32,ann_int8",
                   help="built-in cost tables, comma-separated")
    e.add_argument("--cost-table", action="append", default=[], help="your own cost table (JSON), repeatable")
    e.add_argument("--check-lava", action="store_true", help="also count on Lava and require equal counts")
    e.add_argument("--out", help="directory for energy.json and energy.png")
    e.set_defaults(func=cmd_energy)

    pr = sub.add_parser("prune", help="structured pruning (QP-SNN SVS, SCA or random): score, shrink, fine-tune")
    pr.add_argument("checkpoint", metavar="CKPT")
    pr.add_argument("--criterion", default="svs", choices=["svs", "sca", "random"])
    pg = pr.add_mutually_exclusive_group(required=True)
    pg.add_argument("--ratio", type=float, help="fraction of channels/neurons removed from every prunable layer")
    pg.add_argument("--ratios", help="one fraction per prunable layer (group), comma-separated, in order")
    pr.add_argument("--finetune-epochs", type=int, default=1)
    pr.add_argument("--out", required=True, help="the pruned checkpoint (.pt)")
    pr.add_argument("--dataset", default=None, choices=DATASETS, help="default: the checkpoint's")
    pr.add_argument("--batches", type=int, default=4, help="training batches the scores are averaged over")
    pr.add_argument("--batch-size", type=int, default=64, help="scoring and fine-tuning batch size")
    pr.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (Adam, cosine)")
    pr.add_argument("--train-samples", type=int, default=None, help="fine-tune on this many training samples")
    pr.add_argument("--samples", type=int, default=None, help="test samples for accuracy (default all)")
    pr.add_argument("--synops-samples", type=int, default=256, help="test samples SynOps are measured on")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--json", help="write the scores' stability, summary and accuracies here")
    pr.add_argument("--data-dir", help="folder of the dataset's files")
    pr.add_argument("--denoise", action="store_true", help="event data: drop unsupported events")
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    pr.set_defaults(func=cmd_prune)

    for sp in (t, s, v, dp, e):
        sp.add_argument("--data-dir", help="folder of the dataset's files (fashion-mnist: the idx .gz files; "
                                           "nmnist, ncaltech101, dvsgesture, cifar10dvs: the dataset's root)")
        sp.add_argument("--denoise", action="store_true",
                        help="event data: drop events without neighbourhood support (docs/events.md)")
    for sp in (d, t, s, v, e):
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)  # stop like Ctrl-C: clean-up code runs
    try:
        return args.func(args)
    except QsnnError as e:
        print(f"qsnn-lava: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("qsnn-lava: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("qsnn-lava: terminated", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
