"""The ``qsnn-lava`` command: a thin layer over the Python API (``qsnn_lava.api``) that parses arguments
and prints what the API returns.

Exit codes: 0 success (verify: equivalent), 1 verify found mismatches, 2 bad input (one line on
stderr, no traceback, no partial output file), 3 deploy --target loihi2 without lava-loihi (the bundle
is written), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""
from __future__ import annotations

import argparse
import os
import sys

from .data import DATASETS
from .deployment.backends import BACKENDS
from .errors import QsnnError, Terminated

EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2


def _api():
    from . import api

    return api


# ---------------------------------------------------------------- printing
def print_report(rep: dict) -> None:
    """Print a verify report ``rep``: each backend's accuracy, each compared pair's spike mismatches (first
    divergence and likely cause), then EQUIVALENT or NOT EQUIVALENT."""
    for k, v in rep["accuracy"].items():
        print(f"  accuracy {k:<10} {100 * v:6.2f} %  ({rep['samples_per_backend'][k]} samples)")
    for k, c in rep["comparisons"].items():
        line = f"  spikes   {k:<24} {c['mismatches']} mismatches over {c['samples']} samples"
        if c["first_divergence"]:
            fd = c["first_divergence"]
            line += (f"; first at sample {fd['sample']}, layer {fd['layer']}, neuron {fd['neuron']}, "
                     f"step {fd['timestep']}")
        print(line)
        if c.get("diagnosis"):
            print(f"  {k}: likely cause: {c['diagnosis']['likely_cause']}")
    print("  EQUIVALENT" if rep["equivalent"] else "  NOT EQUIVALENT")


def _print_overflow(rep: dict) -> None:
    from .bounds import flagged

    bounds = rep["overflow"]["static"]
    for name in flagged(bounds):
        b = bounds[name]
        what = " and ".join(w for w, on in (("wrap u", b["u_can_wrap"]), ("saturate v", b["v_can_saturate"])) if on)
        print(f"  warning: layer {name} can {what} (worst case |u| <= {b['u_bound']}, |v| <= {b['v_bound']}; "
              "24-bit limit 8388608)")


def _sizes(net) -> str:
    return " -> ".join([str(net.n_in)] + [str(layer.neuron.n) for layer in net.layers])


# ---------------------------------------------------------------- commands
def cmd_train(args) -> int:
    """``qsnn-lava train``: train on ``args.dataset``, save the checkpoint ``args.out``, print the test accuracy
    and each layer's bit-width utilisation; returns exit code 0. With ``--nproc N`` (N > 1) the same command
    runs in N processes through torchrun and this returns torchrun's exit status; under torchrun only rank 0
    prints."""
    from .distributed import check_launch, launch, under_torchrun

    if args.nproc < 1:
        raise QsnnError(f"--nproc {args.nproc}: give the number of training processes (>= 1)")
    if args.nproc > 1 and not under_torchrun():
        check_launch(args.device, args.nproc)
        return launch(_without_nproc(args.argv), args.nproc)
    options = {k: getattr(args, k) for k in ("arch", "hidden", "channels", "bn", "quant", "bits", "first_bits",
                                             "last_bits", "theta", "timesteps", "neuron", "mem_bits", "bias_exp_min",
                                             "input", "input_bits", "learn_threshold", "readout")}
    recipe = {k: getattr(args, k) for k in ("weight_decay", "warmup_epochs", "label_smoothing", "crop_pad", "flip",
                                            "synops_budget", "synops_weight")}
    model = _api().train(dataset=args.dataset, data_dir=args.data_dir, denoise=args.denoise, epochs=args.epochs,
                         lr=args.lr, batch_size=args.batch_size, seed=args.seed, out=args.out, resume=args.resume,
                         progress=not args.quiet, recipe=recipe, device=args.device, data_workers=args.data_workers,
                         **options)
    if not _is_rank_zero():  # under torchrun: one process reports
        return 0
    hist = model.history
    print(f"trained {args.epochs} epochs in {hist['seconds']:.1f} s: test accuracy "
          f"{100 * hist['test_acc'][-1]:.2f} % (integer eval model) -> {args.out}")
    print("bit-width utilisation (QP-SNN Eq. 8): "
          + ", ".join(f"{k} {100 * v:.0f} %" for k, v in model.meta["utilisation"].items()))
    return 0


def _is_rank_zero() -> bool:
    """False only in the processes of a torchrun group other than rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def _without_nproc(argv: list) -> list:
    """``argv`` without its ``--nproc N`` / ``--nproc=N`` (what each torchrun process is given)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def cmd_convert(args) -> int:
    """``qsnn-lava convert``: checkpoint ``args.checkpoint`` -> validated IR file ``args.output``; prints the
    layer sizes and T, and a note when a neuron type is CPU only. Returns exit code 0."""
    from .io import check_output

    check_output(args.output, inputs=[args.checkpoint])
    net = _api().convert(args.checkpoint)
    net.save(args.output)
    print(f"converted {args.checkpoint} -> {args.output}: {_sizes(net)}, T = {net.timesteps}")
    cpu_only = [layer.name for layer in net.layers if layer.neuron.type != "lif"]
    if cpu_only:
        print(f"note: {', '.join(cpu_only)} use the {net.layers[0].neuron.type} neuron, which Loihi 2 cannot run: "
              "CPU only (Lava simulation); `deploy --target loihi2` refuses this network")
    return 0


def cmd_simulate(args) -> int:
    """``qsnn-lava simulate``: run IR ``args.ir`` on ``args.backend`` with the ``--input`` spikes or dataset
    samples; prints samples, seconds and accuracy, and writes the output layer's spikes [N, T, n] (uint8
    .npy; a readout layer's voltages, int32) to ``args.output`` when given. Returns exit code 0."""
    import numpy as np

    from .io import atomic_write, check_output

    api = _api()
    if args.output:
        check_output(args.output, inputs=[args.ir, args.input])
    net = api.load(args.ir)
    if not isinstance(net, api.Network):
        raise QsnnError(f"'{args.ir}' is a checkpoint; simulate runs an IR: `qsnn-lava convert {args.ir} -o IR`")
    spikes = api.read_spikes(args.input, net) if args.input else None
    rec = api.simulate(net, spikes, backend=args.backend, dataset=args.dataset, data_dir=args.data_dir,
                       denoise=args.denoise, samples=args.samples, progress=not args.quiet, workers=args.workers)
    msg = f"{args.backend}: {rec.samples} samples in {rec.info['seconds']:.2f} s"
    if "labels" in rec.info:
        msg += f", accuracy {100 * rec.accuracy(rec.info['labels']):.2f} %"
    print(msg)
    if args.output:
        last = net.layers[-1].name
        what = "voltages (int32, internal units)" if last in rec.voltages else "spikes"
        out = np.transpose(rec.voltages.get(last, rec.spikes[-1]), (1, 0, 2))  # [N, T, n_out]
        with atomic_write(args.output) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, out)
        print(f"output {what} [N, T, n] {out.shape} -> {args.output}")
    return 0


def cmd_verify(args) -> int:
    """``qsnn-lava verify``: compare backends spike by spike on a checkpoint, IR or bundle ``args.target``;
    prints the report and writes it to ``args.out`` when given. Returns exit code 0 when equivalent, 1 if not."""
    from .io import check_output

    api = _api()
    if args.out:
        check_output(args.out, inputs=[args.target, args.against], kind="dir",
                     names=["report.json", "report.html", "raster.png", "mismatch_heatmap.png"])
    res = api.verify(args.target, dataset=args.dataset, data_dir=args.data_dir, denoise=args.denoise,
                     samples=args.samples, backends=args.backends, against=args.against, progress=not args.quiet,
                     device=args.device, workers=args.workers)
    if not _is_rank_zero():  # under torchrun: one process reports
        return 0 if res.equivalent else EXIT_MISMATCH
    rep = res.report
    if rep.get("bundle"):
        _print_bundle_verify(args.target, rep)
        return 0 if res.equivalent else EXIT_MISMATCH
    _print_overflow(rep)
    backends = ", ".join(rep["samples_per_backend"])
    print(f"verify {args.target}{' against ' + args.against if args.against else ''}: {backends} "
          f"on {rep['samples']} {args.dataset} test samples")
    print_report(rep)
    if args.out:
        files = res.save(args.out)
        print(f"wrote {files[0]}, {files[1]}")
    return 0 if res.equivalent else EXIT_MISMATCH


def _print_bundle_verify(path, rep: dict) -> None:
    from .deployment.bundle import report_lines

    for line in report_lines(rep):
        print(line)


def cmd_deploy(args) -> int:
    """``qsnn-lava deploy``: design-rule check, resource table and a bundle in ``args.out``, then the bundle's
    run on ``--target``. Returns the run's status: 0 equal to the expected spikes, 1 not, 3 (EXIT_NO_LOIHI)
    when loihi2 was asked for and lava-loihi is not installed (the bundle is written all the same)."""
    from .deployment.bundle import EXIT_NO_LOIHI
    from .deployment.resources import format_table

    res = _api().deploy(args.target, target=args.target_kind, out=args.out, dataset=args.dataset,
                        data_dir=args.data_dir, denoise=args.denoise, samples=args.samples,
                        chip_model=args.chip_model, progress=not args.quiet)
    print(f"design rules: passed ({len(res.drc['rules'])} rules, {len(res.manifest['network']['layers'])} layers)")
    print(format_table(res.resources))
    netx = res.manifest["netx"]["file"] or f"none ({res.manifest['netx']['reason']})"
    n = res.manifest["network"].get("samples", args.samples)
    print(f"bundle {args.out}: IR, netx {netx}, manifest, run.py, {n} sample inputs")
    if res.status == EXIT_NO_LOIHI:
        print(f"qsnn-lava: Loihi 2 not available: Intel's lava-loihi extension is not installed (it is "
              f"distributed to INRC members only). The bundle is ready in '{args.out}': copy it to a "
              f"system with lava-loihi and run `python {args.out}/run.py`.", file=sys.stderr)
        return EXIT_NO_LOIHI
    for line in res.lines:
        print(line)
    return res.status


def cmd_export_netx(args) -> int:
    """``qsnn-lava export-netx``: IR or checkpoint ``args.target`` -> lava-dl netx file ``args.output``; prints
    how to load it (reset_interval = T). Returns exit code 0."""
    api = _api()
    target = api.load(args.target)
    api.export_netx(target, args.output, inputs=[args.target])
    T = target.timesteps if isinstance(target, api.Network) else int(target.config["timesteps"])
    print(f"exported {args.target} -> {args.output} (lava-dl netx HDF5; load it with "
          f"lava.lib.dl.netx.hdf5.Network(path, reset_interval={T}, reset_offset=1))")
    return 0


def cmd_import_netx(args) -> int:
    """``qsnn-lava import-netx``: lava-dl netx file ``args.netx`` -> IR file ``args.output`` of
    ``args.timesteps`` time steps per sample; prints the layer sizes. Returns exit code 0."""
    from .io import check_output

    check_output(args.output, inputs=[args.netx])
    net = _api().import_netx(args.netx, args.timesteps)
    net.save(args.output)
    print(f"imported {args.netx} -> {args.output}: {_sizes(net)}, T = {net.timesteps}")
    return 0


def cmd_import_nir(args) -> int:
    """`qsnn-lava import-nir GRAPH.nir -o IR --dt DT`: a NIR graph -> IR, with the conversion's report."""
    import json

    from .converters.nir import format_report
    from .io import atomic_files, check_output

    api = _api()
    check_output(args.output, inputs=[args.graph])
    if args.report:
        check_output(args.report, inputs=[args.graph, args.output])
    calibration = labels = None
    if args.calibrate:
        data = api.load_dataset(args.calibrate, args.data_dir, args.timesteps or 8)
        calibration, labels = api.encode(data.test, args.timesteps or 8, args.samples)
    net, report = api.import_nir(args.graph, args.dt, args.timesteps, weight_bits=args.weight_bits,
                                 calibration=calibration, labels=labels, approximate=args.approximate,
                                 method=args.method)
    with atomic_files([args.output] + ([args.report] if args.report else [])) as tmps:  # all or none
        net.save(tmps[0])
        if args.report:
            tmps[1].write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    print(f"imported {args.graph} -> {args.output}: {_sizes(net)}, T = {net.timesteps}"
          + (" (bit-exact: a qsnn-lava export)" if report.get("exact") else ""))
    if not report.get("exact"):
        print(format_report(report))
    return 0


def cmd_export_nir(args) -> int:
    """`qsnn-lava export-nir IR_OR_CKPT -o GRAPH.nir`: our integer network as a NIR graph."""
    api = _api()
    api.export_nir(args.target, args.output, dt=args.dt)
    print(f"exported {args.target} -> {args.output} (NIR, dt = {args.dt} s; the exact integers are in the nodes' "
          "metadata: import-nir gives back the identical IR)")
    return 0


def cmd_finetune(args) -> int:
    """``qsnn-lava finetune IR_OR_CKPT -o OUT``: quantization-aware fine-tuning in the deployed integer dynamics;
    an IR in writes an IR, a checkpoint in writes a checkpoint. Prints the accuracy before and after."""
    import json

    from .io import atomic_files, check_output

    api = _api()
    check_output(args.out, inputs=[args.target])
    if args.json:
        check_output(args.json, inputs=[args.target, args.out])
    result = api.finetune(args.target, dataset=args.dataset, data_dir=args.data_dir, denoise=args.denoise,
                          epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                          train_samples=args.train_samples, samples=args.samples, biases=args.biases,
                          progress=not args.quiet)
    ft = result.meta["finetune"]
    with atomic_files([args.out] + ([args.json] if args.json else [])) as tmps:  # both or neither
        api.save(result, tmps[0])
        if args.json:
            tmps[1].write_text(json.dumps(ft, indent=2, sort_keys=True) + "\n")
    what = "IR" if isinstance(result, api.Network) else "checkpoint"
    print(f"fine-tuned {args.target} for {ft['epochs']} epochs in {ft['seconds']:.1f} s on {ft['dataset']} -> "
          f"{args.out} ({what})")
    print(f"test accuracy on {ft['test_samples']} samples: {100 * ft['accuracy_before']:.2f} % before, "
          f"{100 * ft['accuracy_after']:.2f} % after (the deployed integer network)")
    if args.json:
        print(f"wrote {args.json}")
    return 0


def cmd_energy(args) -> int:
    """``qsnn-lava energy``: operation counts from simulating ``args.target`` and the estimated energy per
    inference under each cost table; writes energy.json and energy.png to ``args.out`` when given. Returns
    exit code 0, or 1 when ``--check-lava`` finds Lava's counts differ from the reference's."""
    from .io import check_output

    if args.out:
        check_output(args.out, inputs=[args.target, *args.cost_table], kind="dir", names=["energy.json", "energy.png"])
    rep = _api().energy(args.target, dataset=args.dataset, data_dir=args.data_dir, denoise=args.denoise,
                        samples=args.samples, tables=args.tables, cost_tables=args.cost_table,
                        check_lava=args.check_lava, progress=not args.quiet, device=args.device,
                        ann_accuracy=_ann_accuracy(args.ann_accuracy))
    if rep.lava_counts_equal is not None:
        print(f"operation counts from Lava {'equal' if rep.lava_counts_equal else 'DIFFER from'} the reference's")
        if not rep.lava_counts_equal:
            return EXIT_MISMATCH
    print(f"energy per inference, {rep.counts['samples']} {args.dataset} samples (estimates from operation counts):")
    print(rep.table())
    for line in rep.verdicts:
        print(line + " (estimates)")
    if args.out:
        files = rep.save(args.out)
        print(f"wrote {files[0]}, {files[1]}")
    return 0


def _ann_accuracy(values: list):
    """``--ann-accuracy`` values (percent: "92.3" for every ANN table, or "ann_int8=92.3") -> a fraction, a
    {table: fraction} dict, or None; QsnnError naming a value that is not a percentage."""
    if not values:
        return None
    out = {}
    for v in values:
        name, _, pct = v.rpartition("=")
        try:
            out[name or None] = float(pct) / 100
        except ValueError:
            raise QsnnError(f"--ann-accuracy '{v}' is not a percentage; give e.g. 92.3 or ann_int8=92.3") from None
    return out[None] if list(out) == [None] else {k: v for k, v in out.items() if k is not None}


def cmd_demo(args) -> int:
    """``qsnn-lava demo``: train on digits, convert, run torch, reference and Lava and verify, into ``args.out``;
    prints each stage and the report. Returns exit code 0 when equivalent, 1 if not."""
    res = _api().demo(args.out, epochs=args.epochs, seed=args.seed, lava_samples=args.lava_samples,
                      progress=not args.quiet, on_stage=print)
    print_report(res.verify.report)
    if res.lava_skipped:
        print(f"  Lava step skipped: {res.lava_skipped}")
    print("wrote " + ", ".join(res.files[k] for k in ("report", "raster", "checkpoint", "ir")))
    return 0 if res.equivalent else EXIT_MISMATCH


def cmd_prune(args) -> int:
    """Score, prune, fine-tune, save; prints the summary table (docs/pruning.md)."""
    from .io import atomic_files, check_output, save_checkpoint, write_json
    from .pruning import format_summary

    check_output(args.out, inputs=[args.checkpoint])
    if args.json:
        check_output(args.json, inputs=[args.checkpoint, args.out])
    pruned = _api().prune(args.checkpoint, criterion=args.criterion, ratio=args.ratio, ratios=args.ratios,
                          finetune_epochs=args.finetune_epochs, dataset=args.dataset, data_dir=args.data_dir,
                          denoise=args.denoise, batches=args.batches, batch_size=args.batch_size, lr=args.lr,
                          train_samples=args.train_samples, samples=args.samples,
                          synops_samples=args.synops_samples, seed=args.seed, progress=not args.quiet,
                          device=args.device)
    result = {**pruned.pruning, "out": str(args.out)}
    paths = [args.out] + ([args.json] if args.json else [])
    with atomic_files(paths) as tmps:  # the checkpoint and its JSON: both or neither
        save_checkpoint(tmps[0], pruned.config, pruned.state_dict(), pruned.meta)
        if args.json:
            write_json(tmps[1], result)
    groups = result["groups"]
    what = ", ".join(f"{'+'.join(g['layers'])} {g['ratio']:g}" for g in groups)
    print(f"pruned {args.checkpoint} by {args.criterion} ({what}), fine-tuned {args.finetune_epochs} epochs "
          f"-> {args.out}")
    summary, acc = result["summary"], result["accuracy"]
    print(format_summary(summary["before"], summary["after"]))
    print(f"accuracy on {acc['samples']} {result['dataset']} test samples: {100 * acc['before']:.2f} % before, "
          f"{100 * acc['pruned']:.2f} % pruned, {100 * acc['finetuned']:.2f} % fine-tuned; SynOps and spikes per "
          f"inference on {summary['synops_samples']} samples")
    if args.json:
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------- parser
class _Help(argparse.HelpFormatter):
    """Shows each option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {shown})"


def _command(sub, name: str, help: str, func):
    p = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
    p.set_defaults(func=func)
    return p


def _data_options(p, samples_help: str = "test samples (default: the whole test split)") -> None:
    p.add_argument("--dataset", default="digits", choices=DATASETS, help="where the inputs come from")
    p.add_argument("--samples", type=int, default=None, help=samples_help)
    p.add_argument("--data-dir", help="folder of the dataset's files (fashion-mnist: the idx .gz files; nmnist, "
                                      "ncaltech101, dvsgesture, cifar10dvs: the dataset's root)")
    p.add_argument("--denoise", action="store_true",
                   help="event data: drop events without neighbourhood support (docs/events.md)")


def _quiet(p) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _workers(p) -> None:
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="the reference's sample shards on N threads (default: torch's thread count), Lava's on N "
                        "worker processes (default 1); the spikes are the same for any N")


def _device(p, what: str) -> None:
    p.add_argument("--device", default="auto", help=f"where {what} runs: auto (a GPU when there is one), cpu, "
                                                     "cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    """The ``qsnn-lava`` argument parser: one subcommand per command, each setting ``func`` to its ``cmd_*``."""
    p = argparse.ArgumentParser(prog="qsnn-lava", formatter_class=_Help,
                                description="Train quantized spiking networks, convert them to Lava, run them "
                                            "bit-exactly and prove it, spike by spike.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = _command(sub, "demo", "train, convert, run on torch/reference/Lava and verify, on digits", cmd_demo)
    d.add_argument("--out", default="out/demo", help="output folder")
    d.add_argument("--epochs", type=int, default=30, help="training epochs")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--lava-samples", type=int, default=360, help="test samples run through Lava")
    _quiet(d)

    t = _command(sub, "train", "train a QSNN (quantization-aware, on the deployed integer dynamics) and save "
                               "a checkpoint", cmd_train)
    t.add_argument("--dataset", default="digits", choices=DATASETS, help="training and test data")
    t.add_argument("--data-dir", help="folder of the dataset's files (fashion-mnist: the idx .gz files; event "
                                      "datasets: the dataset's root)")
    t.add_argument("--denoise", action="store_true", help="event data: drop events without neighbourhood support")
    t.add_argument("--out", required=True, help="checkpoint path (.pt), rewritten after every epoch (resumable)")
    t.add_argument("--epochs", type=int, default=30, help="training epochs")
    t.add_argument("--arch", default="mlp",
                   help="mlp: dense layers (--hidden); vgg: conv-pool-conv-pool-fc; resnet: conv stem, two "
                        "residual blocks, fc (conv nets need an image dataset; see docs/architectures.md)")
    t.add_argument("--hidden", type=int, nargs="+", default=[256], help="mlp: hidden layer widths")
    t.add_argument("--channels", type=int, nargs=2, default=None, help="conv archs: the two stage widths "
                                                                       "(default 16 32)")
    t.add_argument("--bn", action=argparse.BooleanOptionalAction, default=None,
                   help="conv archs: BatchNorm folded into integer weights and biases (default on for conv)")
    t.add_argument("--bias-exp-min", type=int, default=None,
                   help="conv archs with --bn: smallest exponent of the folded bias; 6 keeps biases in whole "
                        "weight units, which lava-dl netx files require (export-netx) (default 0)")
    t.add_argument("--quant", default="uniform",
                   help="weight quantizer: uniform (QP-SNN Eqs. 4-6), rescaw (QP-SNN ReScaW; theta counts in "
                        "units of gamma), sigmoid (sigmoid-sum; --bits 1 = binary), ternary (sigmoid-sum {-1, 0, 1})")
    t.add_argument("--bits", type=int, default=4, help="weight bits (1..8)")
    t.add_argument("--first-bits", type=int, default=None, help="weight bits of the first layer (default --bits)")
    t.add_argument("--last-bits", type=int, default=None, help="weight bits of the last layer (default --bits)")
    t.add_argument("--neuron", default="lif",
                   help="lif: QP-SNN hard-reset LIF; mfp: memory-free neuron trained in parallel over time; "
                        "qmem: LIF with a --mem-bits stored membrane (CPU only, not deployable to Loihi)")
    t.add_argument("--mem-bits", type=int, default=None, help="qmem: bits of the stored membrane (2..8; default 4)")
    t.add_argument("--theta", type=float, default=None,
                   help="threshold in real weight units (default 2 for mlp, 1 for conv archs)")
    t.add_argument("--timesteps", type=int, default=8, help="time steps per sample (T)")
    t.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (cosine schedule)")
    t.add_argument("--batch-size", type=int, default=64, help="training batch size")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--resume", help="continue the interrupted run saved in this checkpoint (--out may be it)")
    _device(t, "training")
    t.add_argument("--data-workers", type=int, default=1, metavar="N",
                   help="processes that read and bin an event dataset's files (N-MNIST, N-Caltech101, the DVS "
                        "Gesture .npy copy); the binned spikes are the same for any N")
    t.add_argument("--nproc", type=int, default=1,
                   help="train in this many processes (torchrun, DistributedDataParallel; --batch-size is the "
                        "global batch): one per GPU, or gloo on CPUs (docs/training.md)")
    t.add_argument("--input", default=None, choices=["rate", "direct"],
                   help="network input: rate-coded 0/1 spikes (default) or direct graded intensities every step")
    t.add_argument("--input-bits", type=int, default=None, help="direct input: bits per intensity (2..8; default 8)")
    t.add_argument("--learn-threshold", action=argparse.BooleanOptionalAction, default=None,
                   help="learn a per-layer threshold, deployed as an integer vth (lif, mfp)")
    t.add_argument("--readout", action=argparse.BooleanOptionalAction, default=None,
                   help="the output layer a non-spiking readout: class = the largest voltage summed over T "
                        "(spike counts saturate at T and tie; docs/training.md)")
    t.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay on the weights (default 0)")
    t.add_argument("--warmup-epochs", type=float, default=None,
                   help="linear warm-up epochs, then cosine per batch (default 0: cosine per epoch)")
    t.add_argument("--label-smoothing", type=float, default=None, help="cross-entropy label smoothing (default 0)")
    t.add_argument("--crop-pad", type=int, default=None, help="images: random crop after zero padding by this many "
                   "pixels (default 0)")
    t.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="images: random horizontal flips")
    t.add_argument("--synops-budget", type=float, default=None, help="activity regulariser: SynOps per inference "
                   "allowed, counted on the training forward as the deployed network counts them (docs/energy.md)")
    t.add_argument("--synops-weight", type=float, default=None, help="the regulariser's weight (default 1 with a "
                   "budget; alone: the penalty per million SynOps)")
    _quiet(t)

    c = _command(sub, "convert", "checkpoint -> IR (versioned HDF5)", cmd_convert)
    c.add_argument("checkpoint", help="a checkpoint written by qsnn-lava train or prune")
    c.add_argument("-o", "--output", required=True, help="the IR file to write (.h5)")

    s = _command(sub, "simulate", "run an IR on a backend", cmd_simulate)
    s.add_argument("ir", help="an IR file (qsnn-lava convert) or a bundle folder")
    s.add_argument("--backend", default="reference", choices=list(BACKENDS),
                   help="reference: the exact integer simulator; lava: Lava's bit-accurate CPU models")
    _data_options(s)
    s.add_argument("--input", help="input spikes .npy, [T, n_in] or [N, T, n_in] (or the input's C, H, W)")
    s.add_argument("--output", help="write the output layer's spikes [N, T, n] as .npy")
    _workers(s)
    _quiet(s)

    v = _command(sub, "verify", "compare backends spike by spike (exit 0 equal, 1 not, 2 bad input)", cmd_verify)
    v.add_argument("target", metavar="CKPT_IR_OR_BUNDLE", help="a checkpoint, an IR file or a bundle folder")
    _data_options(v)
    v.add_argument("--backends", default=None,
                   help="two or more of torch,reference,lava (default torch,reference,lava for a checkpoint or "
                        "with --against, else reference,lava)")
    v.add_argument("--against", metavar="CKPT", help="compare an IR with the checkpoint it came from "
                   "(torch side from CKPT, reference and Lava from the IR)")
    v.add_argument("--out", help="folder for report.json, report.html and plots")
    _device(v, "the torch model and the reference")
    _workers(v)
    _quiet(v)

    dp = _command(sub, "deploy", "design-rule check, resource estimate and a deployment bundle", cmd_deploy)
    dp.add_argument("target", metavar="IR_OR_CKPT", help="an IR file or a checkpoint")
    dp.add_argument("--target", dest="target_kind", choices=["cpu", "loihi2"], default="cpu",
                    help="cpu: run the bundle on Lava's CPU models; loihi2: on the chip (needs lava-loihi; "
                         "exit code 3 when it is missing)")
    dp.add_argument("--out", required=True, help="bundle folder (an existing one is replaced only if it is a bundle)")
    _data_options(dp, samples_help="sample inputs stored in the bundle")
    dp.set_defaults(samples=8)
    dp.add_argument("--chip-model", help="JSON file overriding the resource model's parameters")
    _quiet(dp)

    x = _command(sub, "export-netx", "IR or checkpoint -> lava-dl netx HDF5 (dense, conv and sum-pool layers)",
                 cmd_export_netx)
    x.add_argument("target", metavar="IR_OR_CKPT", help="an IR file or a checkpoint")
    x.add_argument("-o", "--output", required=True, help="the netx file to write (.net)")

    im = _command(sub, "import-netx", "lava-dl netx HDF5 (CUBA dense, conv and pool layers) -> IR", cmd_import_netx)
    im.add_argument("netx", metavar="NET", help="a lava-dl netx HDF5 file")
    im.add_argument("-o", "--output", required=True, help="the IR file to write (.h5)")
    im.add_argument("--timesteps", type=int, required=True, help="time steps per sample (netx files carry none)")

    ni = _command(sub, "import-nir", "NIR graph (snnTorch, Norse, Sinabs, Rockpool, ...) -> IR, with a report of "
                                     "what the conversion to Loihi integers cost", cmd_import_nir)
    ni.add_argument("graph", metavar="GRAPH.nir", help="a NIR file (nir.write)")
    ni.add_argument("-o", "--output", required=True, help="the IR file to write (.h5)")
    ni.add_argument("--dt", type=float, default=None, help="seconds per time step (NIR carries none; required "
                                                           "unless the graph is a qsnn-lava export)")
    ni.add_argument("--timesteps", type=int, default=None, help="time steps per sample")
    ni.add_argument("--weight-bits", type=int, default=8, help="weight mantissa bits (2..8)")
    ni.add_argument("--method", default="euler", choices=["euler", "exp"], help="how tau/dt becomes du, dv")
    ni.add_argument("--approximate", action="store_true",
                    help="accept what Loihi 2 can only approximate (listed in the report) instead of refusing")
    ni.add_argument("--calibrate", choices=DATASETS, help="set weight exponents and compare float vs integer on "
                                                          "this dataset's test samples")
    ni.add_argument("--samples", type=int, default=64, help="calibration samples")
    ni.add_argument("--data-dir", help="folder of the calibration dataset's files")
    ni.add_argument("--report", help="also write the conversion report as JSON here")

    xn = _command(sub, "export-nir", "IR or checkpoint -> NIR graph (float parameters + exact integers in metadata)",
                  cmd_export_nir)
    xn.add_argument("target", metavar="IR_OR_CKPT", help="an IR file or a checkpoint")
    xn.add_argument("-o", "--output", required=True, help="the NIR file to write (.nir)")
    xn.add_argument("--dt", type=float, default=1e-3, help="seconds per time step written into the graph")

    fn = _command(sub, "finetune", "recover accuracy lost in conversion: quantization-aware training in the "
                                   "deployed integer dynamics (IR in -> IR out, checkpoint in -> checkpoint out)",
                  cmd_finetune)
    fn.add_argument("target", metavar="IR_OR_CKPT", help="an IR file (e.g. from import-nir), a bundle or a checkpoint")
    fn.add_argument("-o", "--out", required=True, help="the fine-tuned IR (.h5) or checkpoint (.pt); never the input")
    fn.add_argument("--dataset", default=None, choices=DATASETS, help="training and test data (default: the "
                                                                      "target's, else digits)")
    fn.add_argument("--data-dir", help="folder of the dataset's files")
    fn.add_argument("--denoise", action="store_true", help="event data: drop unsupported events")
    fn.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs")
    fn.add_argument("--lr", type=float, default=None,
                    help="Adam learning rate (cosine schedule); an IR: weight mantissas per step (default 0.05); a "
                         "checkpoint: as train's (default 1e-3)")
    fn.add_argument("--batch-size", type=int, default=64, help="training batch size")
    fn.add_argument("--seed", type=int, default=0, help="random seed")
    fn.add_argument("--train-samples", type=int, default=None, help="train on this many training samples "
                                                                    "(default all)")
    fn.add_argument("--samples", type=int, default=None, help="test samples for accuracy (default all)")
    fn.add_argument("--biases", action=argparse.BooleanOptionalAction, default=True,
                    help="IR: learn the biases within their 13-bit mantissas (--no-biases keeps them)")
    fn.add_argument("--json", help="also write the settings and accuracies per epoch here")
    _quiet(fn)

    e = _command(sub, "energy", "operation counts from simulation and energy per inference by cost table",
                 cmd_energy)
    e.add_argument("target", metavar="IR_OR_CKPT", help="an IR file or a checkpoint")
    _data_options(e)
    e.add_argument("--tables", default="loihi1,cmos45_snn,ann_fp32,ann_int8,cmos45_snn_mem,ann_int8_mem",
                   help="built-in cost tables, comma-separated (docs/energy.md lists them)")
    e.add_argument("--cost-table", action="append", default=[], help="your own cost table (JSON), repeatable")
    e.add_argument("--check-lava", action="store_true", help="also count on Lava and require equal counts")
    e.add_argument("--out", help="folder for energy.json and energy.png")
    _device(e, "the reference simulation")
    e.add_argument("--ann-accuracy", action="append", default=[], metavar="[TABLE=]PCT",
                   help="the ANN twin's accuracy in percent (for one ANN table: ann_int8_mem=92.3), repeatable; "
                        "adds a verdict line per ANN table")
    _quiet(e)

    pr = _command(sub, "prune", "structured pruning (QP-SNN SVS, SCA or random): score, shrink, fine-tune",
                  cmd_prune)
    pr.add_argument("checkpoint", metavar="CKPT", help="the checkpoint to prune")
    pr.add_argument("--criterion", default="svs", choices=["svs", "sca", "random"],
                    help="svs: spike-map singular values (QP-SNN Eq. 13); sca: membrane L1; random")
    pg = pr.add_mutually_exclusive_group(required=True)
    pg.add_argument("--ratio", type=float, help="fraction of channels/neurons removed from every prunable layer")
    pg.add_argument("--ratios", help="one fraction per prunable layer (group), comma-separated, in order")
    pr.add_argument("--finetune-epochs", type=int, default=1, help="fine-tuning epochs after pruning")
    pr.add_argument("--out", required=True, help="the pruned checkpoint (.pt)")
    pr.add_argument("--dataset", default=None, choices=DATASETS, help="default: the checkpoint's")
    pr.add_argument("--data-dir", help="folder of the dataset's files")
    pr.add_argument("--denoise", action="store_true", help="event data: drop unsupported events")
    pr.add_argument("--batches", type=int, default=4, help="training batches the scores are averaged over")
    pr.add_argument("--batch-size", type=int, default=64, help="scoring and fine-tuning batch size")
    pr.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (Adam, cosine)")
    pr.add_argument("--train-samples", type=int, default=None, help="fine-tune on this many training samples "
                                                                     "(default all)")
    pr.add_argument("--samples", type=int, default=None, help="test samples for accuracy (default all)")
    pr.add_argument("--synops-samples", type=int, default=256, help="test samples SynOps are measured on")
    pr.add_argument("--seed", type=int, default=0, help="random seed")
    pr.add_argument("--json", help="also write the scores' stability, summary and accuracies here")
    _device(pr, "scoring, evaluation and fine-tuning")
    _quiet(pr)
    return p


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit code: the command's own
    (0, 1, 3), 2 for a QsnnError (one line on stderr), 130 on Ctrl-C, 143 on SIGTERM. Usage errors exit
    through argparse (SystemExit, code 2)."""
    import signal

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
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
