"""Accuracy-energy frontier on Fashion-MNIST: QSNN variants against the float and int8 ANN of the same shape.

Each QSNN variant (time steps T, SVS pruning, weight bits, first-layer width, a SynOps budget; ``VARIANTS``)
is trained with the recipe and learning rate of bench/fashion_mnist.py (``RECIPE``, ``LR``: direct 8-bit input,
learned thresholds, AdamW, warm-up + cosine, flips), converted, and DEPLOYED: its accuracy is the reference
simulator's on the test images, spike-compared with the torch model (trained = deployed: 0 mismatches
required) and with real Lava on the first --lava-samples (0 mismatches required). Its counts
(deploy.energy.count_ops on the same test images) are priced with the reviewed 45 nm tables (cmos45_snn_mem:
arithmetic at operand width + SRAM traffic; docs/energy.md) and, for reference, the arithmetic-only ones.
The ANN points: the float ANN of the base variant's shape (bench/fashion_mnist.float_ann), trained here, and
its int8 version (post-training quantization: BatchNorm folded, weights int8 per output channel, every
layer's input activations 8-bit with a scale calibrated on 1,000 training images), priced with ann_fp32_mem /
ann_int8_mem on the base QSNN's ANN-twin counts. Every energy is an ESTIMATE with its table.

Writes <out>/<stem>.{md,json,png}: per point accuracy, energy per table, SynOps, firing rate, memory,
mismatches; the Pareto front (accuracy up, energy down) and the issue #18 acceptance check (a QSNN at most 1
point below the int8 ANN with at most 0.5x its energy).
Usage (full run, hours on 2 cores): python bench/energy_frontier.py --epochs 8
Small run (what a shared CPU allows): python bench/energy_frontier.py --train-samples 2000 --epochs 1
       --test-samples 1000 --lava-samples 5 --variants T4,T1,T1-budget --ann-epochs 1
"""
import argparse
import copy
import dataclasses
import time
from pathlib import Path

import common  # the sibling bench/common.py
import numpy as np
import torch
from fashion_mnist import LR, RECIPE, float_ann  # the sibling bench/fashion_mnist.py
from torch import nn

from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.data import Split, encoded, load_dataset
from qsnn_lava.deployment.energy import TABLES, count_ops, energy, memory_bytes
from qsnn_lava.deployment.verify import compare
from qsnn_lava.io import save_checkpoint, save_figure
from qsnn_lava.models import make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train

SNN_TABLE, INT8_TABLE, FP32_TABLE = "cmos45_snn_mem", "ann_int8_mem", "ann_fp32_mem"
ARITH = {"snn": "cmos45_snn", "int8": "ann_int8", "fp32": "ann_fp32"}
BASE = {"arch": "vgg", "channels": [16, 32], "bits": 4, "timesteps": 4, "input": "direct", "input_bits": 8,
        "learn_threshold": True, "readout": True}  # readout: at T = 1 or 2 a spike-count output is mostly ties
# name: (config overrides, {"budget": fraction of the named variant's deployed SynOps} or {"prune": SVS ratio
# of the named variant} or {"epochs_factor": times --epochs}); a variant that depends on another runs after it.
# T1-x3: at T = 1 an epoch costs about a quarter of a T = 4 one, so 3x the epochs is still less training compute.
VARIANTS = {
    "T4": ({}, {}),
    "T2": ({"timesteps": 2}, {}),
    "T1": ({"timesteps": 1}, {}),
    "T1-bits2": ({"timesteps": 1, "bits": 2, "first_bits": 4, "last_bits": 4}, {}),
    "T1-first8": ({"timesteps": 1, "channels": [8, 32]}, {}),
    "T1-small": ({"timesteps": 1, "channels": [8, 16]}, {}),
    "T4-budget": ({}, {"budget": ("T4", 0.5)}),
    "T1-budget": ({"timesteps": 1}, {"budget": ("T1", 0.6)}),
    "T4-svs0.5": ({}, {"prune": ("T4", 0.5)}),
    "T1-svs0.5": ({"timesteps": 1}, {"prune": ("T1", 0.5)}),
    "T1-fixedvth": ({"timesteps": 1, "learn_threshold": False}, {}),  # at T = 1 a learned vth drifts down
    "T1-fixedvth-budget": ({"timesteps": 1, "learn_threshold": False}, {"budget": ("T1-fixedvth", 0.6)}),
    "T1-x3": ({"timesteps": 1}, {"epochs_factor": 3}),
    "T1-x3-svs0.5": ({"timesteps": 1}, {"prune": ("T1-x3", 0.5)}),
}


def subset(data, train_samples, test_samples, seed: int = 0):
    """``data`` with a seeded draw of ``train_samples`` training images and the first ``test_samples`` test
    images (None: all)."""
    tr, te = data.train, data.test
    if train_samples is not None and train_samples < len(tr.y):
        idx = np.sort(np.random.default_rng(seed).permutation(len(tr.y))[:train_samples])
        tr = Split(tr.x[idx], tr.y[idx], tr.levels)
    if test_samples is not None and test_samples < len(te.y):
        te = Split(te.x[:test_samples], te.y[:test_samples], te.levels)
    return dataclasses.replace(data, train=tr, test=te)


def deploy_point(name: str, model, data, lava_samples: int, extra: dict) -> dict:
    """Convert ``model``, run the reference on every test image of ``data`` (spike-compared with torch) and
    real Lava on the first ``lava_samples``; count and price. QSNN point dict."""
    from qsnn_lava.deployment.backends.lava import run as run_lava

    net = model_to_ir(model)
    x, y = encoded(data.test, net.timesteps, input_bits=net.input_bits)
    ref = simulate(net, x)
    torch_mm = compare(evaluate(model, x), ref)["mismatches"]
    lava_mm, lava_s = None, None
    if lava_samples:
        lava = run_lava(net, x[:, :lava_samples])
        lava_mm, lava_s = compare(ref, lava)["mismatches"], lava.info.get("seconds")
    counts = count_ops(net, x, ref)
    t = counts["total"]
    cfg = model.config
    return {"name": name, "family": "QSNN", "accuracy": ref.accuracy(y), "test_samples": int(x.shape[1]),
            "uJ": energy(counts, TABLES[SNN_TABLE])["total"]["uJ"],
            "uJ_arith": energy(counts, TABLES[ARITH["snn"]])["total"]["uJ"],
            "parts_pJ": energy(counts, TABLES[SNN_TABLE])["total"]["parts_pJ"],
            "synops": t["synops_effective"], "firing_rate": t["firing_rate"], "memory_kb": memory_bytes(counts) / 1024,
            "timesteps": net.timesteps, "bits": int(cfg["bits"]), "channels": list(cfg["channels"]),
            "widths": cfg.get("widths") or {}, "torch_vs_reference_mismatches": torch_mm,
            "lava_samples": lava_samples, "reference_vs_lava_mismatches": lava_mm, "lava_seconds": lava_s,
            **extra}, counts


def int8_ann(ann: nn.Module, data, calib: int = 1000) -> nn.Module:
    """Post-training int8 version of the trained float ANN ``ann`` (unchanged): BatchNorm folded into its conv,
    weights rounded to int8 per output channel (symmetric), and each module's input activations rounded to
    8 bits (unsigned after a ReLU, else signed) with a per-module scale from the max over ``calib`` training
    images. Simulated in float (fake quantization): the arithmetic an int8 accelerator does, exactly up to
    float rounding of the rescaling."""
    q = copy.deepcopy(ann).eval()
    for i, m in enumerate(q.mods):
        if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d) and isinstance(m[1], nn.BatchNorm2d):
            conv, bn = m[0], m[1]
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            with torch.no_grad():
                conv.weight.mul_(s[:, None, None, None])
                conv.bias.copy_((conv.bias - bn.running_mean) * s + bn.bias)
            q.mods[i] = nn.Sequential(conv)
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                scale = w.abs().flatten(1).amax(1).clamp_min(1e-12) / 127
                shape = (-1,) + (1,) * (w.dim() - 1)
                w.copy_(torch.round(w / scale.reshape(shape)).clamp(-127, 127) * scale.reshape(shape))
    ranges = {}

    def observe(i):
        def hook(_, inputs):
            x = inputs[0]
            lo, hi = ranges.get(i, (0.0, 0.0))
            ranges[i] = (min(lo, float(x.min())), max(hi, float(x.max())))
        return hook

    handles = [m.register_forward_pre_hook(observe(i)) for i, m in enumerate(q.mods)]
    x = torch.from_numpy(data.train.x[:calib].astype(np.float32) / data.train.levels)
    with torch.no_grad():
        q(x)
    for h in handles:
        h.remove()

    def quantize(i):
        lo, hi = ranges[i]
        signed = lo < 0
        top = 127 if signed else 255
        scale = max(abs(lo), abs(hi), 1e-12) / top

        def hook(_, inputs):
            return (torch.round(inputs[0] / scale).clamp(-top if signed else 0, top) * scale,)
        return hook

    for i, m in enumerate(q.mods):
        m.register_forward_pre_hook(quantize(i))
    return q


def ann_accuracy(ann: nn.Module, data) -> float:
    """Test accuracy of a float (or fake-quantized) ANN on ``data``'s test intensities scaled to [0, 1]."""
    ann.eval()
    with torch.no_grad():
        xt = torch.from_numpy(data.test.x.astype(np.float32) / data.test.levels)
        return float((ann(xt).argmax(-1).numpy() == data.test.y).mean())


def pareto(points: list) -> list:
    """Names of the points no other point beats on both accuracy (higher) and energy (lower)."""
    front = []
    for p in points:
        if not any(o is not p and o["accuracy"] >= p["accuracy"] and o["uJ"] <= p["uJ"]
                   and (o["accuracy"] > p["accuracy"] or o["uJ"] < p["uJ"]) for o in points):
            front.append(p["name"])
    return front


def acceptance(points: list) -> dict:
    """Issue #18: the QSNN points within 1 point of the int8 ANN's accuracy, and whether one of them uses at
    most 0.5x its energy (the reviewed tables)."""
    ann = next(p for p in points if p["name"] == "int8 ANN")
    ok = [p for p in points if p["family"] == "QSNN" and p["accuracy"] >= ann["accuracy"] - 0.01]
    best = min(ok, key=lambda p: p["uJ"], default=None)
    return {"int8_ann_accuracy": ann["accuracy"], "int8_ann_uJ": ann["uJ"],
            "qsnn_within_1_point": [p["name"] for p in ok],
            "best": None if best is None else {"name": best["name"], "accuracy": best["accuracy"],
                                               "ratio_to_int8": best["uJ"] / ann["uJ"]},
            "met": best is not None and best["uJ"] <= 0.5 * ann["uJ"]}


def plot(points: list, front: list, path) -> None:
    """Accuracy vs estimated energy per inference (log x): one marker per family, ANN points labelled,
    QSNN points named, the Pareto front dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {"QSNN": ("o", "tab:orange"), "float ANN": ("s", "tab:blue"), "int8 ANN": ("D", "tab:cyan")}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for fam, (marker, color) in style.items():
        mine = [p for p in points if p["family"] == fam]
        ax.scatter([p["uJ"] for p in mine], [100 * p["accuracy"] for p in mine], marker=marker, color=color,
                   s=50, label=fam, zorder=3)
        for p in mine:
            ax.annotate(p["name"], (p["uJ"], 100 * p["accuracy"]), textcoords="offset points", xytext=(5, 4),
                        fontsize=8 if fam != "QSNN" else 7, weight="bold" if fam != "QSNN" else "normal")
    f = sorted((p for p in points if p["name"] in front), key=lambda p: p["uJ"])
    ax.plot([p["uJ"] for p in f], [100 * p["accuracy"] for p in f], "--", color="gray", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(f"uJ per inference (estimate: {SNN_TABLE} / {INT8_TABLE} / {FP32_TABLE}, 45 nm + SRAM)")
    ax.set_ylabel("deployed test accuracy (%)")
    ax.set_title("Fashion-MNIST accuracy vs estimated energy (Horowitz ISSCC 2014 table)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(args, points: list, front: list, acc: dict) -> str:
    """The report: the scale of the run, one row per point, the front and the acceptance check."""
    md = [f"# Accuracy-energy frontier, {args.dataset}", "",
          f"Scale of this run: {args.train_samples or 'all'} training images, {args.epochs} epoch(s) per QSNN "
          f"(times a variant's epochs_factor; pruned ones: + {args.finetune_epochs} fine-tune), {args.ann_epochs} "
          f"for the ANN, {points[0]['test_samples']} test images, Lava on the first "
          f"{args.lava_samples}. Energies are estimates: counts x the reviewed 45 nm tables ({SNN_TABLE}, "
          f"{INT8_TABLE}, {FP32_TABLE}: arithmetic + SRAM traffic; docs/energy.md); 'arith' is the arithmetic-only "
          "table before the review.", "",
          "| point | family | T | bits | channels | accuracy | uJ / inference | uJ (arith only) | ratio to int8 ANN "
          "| SynOps | firing rate | memory (KB) | torch vs ref | ref vs Lava | on the front |",
          "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    e8 = acc["int8_ann_uJ"]
    for p in points:
        q = p["family"] == "QSNN"
        md.append(f"| {p['name']} | {p['family']} | {p.get('timesteps', '-')} | {p.get('bits', '-')} | "
                  f"{p.get('widths') or p.get('channels', '-')} | {100 * p['accuracy']:.2f} % | {p['uJ']:.4g} | "
                  f"{p.get('uJ_arith', 0):.4g} | {p['uJ'] / e8:.3g} | "
                  f"{p['synops']:.4g} | " + (f"{100 * p['firing_rate']:.1f} %" if q else "-")
                  + f" | {p['memory_kb']:.3g} | {p.get('torch_vs_reference_mismatches', '-')} | "
                  f"{p.get('reference_vs_lava_mismatches', '-')} | {'yes' if p['name'] in front else ''} |")
    b = acc["best"]
    md += ["", f"Pareto front: {', '.join(front)}.", "",
           f"Acceptance (issue #18: a QSNN at most 1 point below the int8 ANN's {100 * acc['int8_ann_accuracy']:.2f} % "
           f"with at most 0.5x its {acc['int8_ann_uJ']:.4g} uJ): "
           + ("no QSNN point within 1 point." if b is None else
              f"best {b['name']} at {100 * b['accuracy']:.2f} % uses {b['ratio_to_int8']:.3g}x; "
              + ("MET." if acc["met"] else "not met.")),
           "", "ANN rows: SynOps column = MACs + adds of one pass; memory = weights at 32 / 8 bits."]
    return "\n".join(md) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--finetune-epochs", type=int, default=1, help="after SVS pruning")
    ap.add_argument("--ann-epochs", type=int, default=3)
    ap.add_argument("--train-samples", type=int, default=None, help="a seeded draw of this many (default: all)")
    ap.add_argument("--test-samples", type=int, default=None, help="the first n test images (default: all)")
    ap.add_argument("--lava-samples", type=int, default=50)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--stem", default="energy_frontier")
    args = ap.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    for v in list(names):  # a variant's base runs first
        dep = VARIANTS[v][1].get("budget", VARIANTS[v][1].get("prune"))
        if dep and dep[0] not in names:
            names.insert(names.index(v), dep[0])
    Path(args.out).mkdir(parents=True, exist_ok=True)  # each variant's checkpoint is saved as it finishes
    data = subset(load_dataset(args.dataset, args.data_dir), args.train_samples, args.test_samples, args.seed)
    t_start = time.perf_counter()
    points, models, counts_of = [], {}, {}
    for name in dict.fromkeys(names):
        overrides, how = VARIANTS[name]
        cfg = make_config(**{**BASE, **overrides}, sizes=[data.n_in, data.n_classes], input_shape=data.shape)
        t0 = time.perf_counter()
        extra = {}
        if "prune" in how:
            import qsnn_lava as ql

            src, ratio = how["prune"]
            try:
                model = ql.prune(models[src], criterion="svs", ratio=ratio, finetune_epochs=args.finetune_epochs,
                                 dataset=args.dataset, data_dir=args.data_dir, train_samples=args.train_samples,
                                 seed=args.seed, samples=args.test_samples)
            except ql.QsnnError as e:
                print(f"{name}: skipped, pruning refused: {e}")
                continue
            extra["pruned_from"] = src
        else:
            recipe = dict(RECIPE)
            if "budget" in how:
                src, frac = how["budget"]
                recipe["synops_budget"] = frac * counts_of[src]["total"]["synops_effective"]
                extra["synops_budget"] = recipe["synops_budget"]
            epochs = args.epochs * how.get("epochs_factor", 1)
            extra["epochs"] = epochs
            model, _ = train(cfg, data, epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             recipe=recipe, progress=False,
                             eval_samples=min(1000, len(data.test.y)))  # deploy_point measures all
        extra["train_seconds"] = time.perf_counter() - t0
        models[name] = model
        point, counts_of[name] = deploy_point(name, model, data, args.lava_samples, extra)
        points.append(point)
        print(f"{name}: {100 * point['accuracy']:.2f} %, {point['uJ']:.4g} uJ ({SNN_TABLE}), SynOps "
              f"{point['synops']:.4g}, torch/ref {point['torch_vs_reference_mismatches']}, ref/Lava "
              f"{point['reference_vs_lava_mismatches']} ({point['train_seconds']:.0f} s)", flush=True)
        save_checkpoint(Path(args.out) / f"{args.stem}_{name}.pt", model.config, model.state_dict(),
                        {"dataset": args.dataset, "epochs": extra.get("epochs", args.finetune_epochs),
                         "variant": name})
    base = names[0]
    ann = float_ann(models[base])
    acc_fp32, ann_s = common.train_ann(ann, data, args.ann_epochs, seed=args.seed)
    acc_int8 = ann_accuracy(int8_ann(ann, data), data)
    c = counts_of[base]
    t = c["total"]
    for label, acc_, table, arith, bits in (("float ANN", acc_fp32, FP32_TABLE, ARITH["fp32"], 32),
                                            ("int8 ANN", acc_int8, INT8_TABLE, ARITH["int8"], 8)):
        points.append({"name": label, "family": label, "accuracy": acc_, "shape_of": base,
                       "uJ": energy(c, TABLES[table])["total"]["uJ"],
                       "uJ_arith": energy(c, TABLES[arith])["total"]["uJ"],
                       "parts_pJ": energy(c, TABLES[table])["total"]["parts_pJ"],
                       "synops": t["ann_macs"] + t["ann_adds"], "memory_kb": memory_bytes(c, bits, ann=True) / 1024,
                       "train_seconds": ann_s if label == "float ANN" else 0.0})
    front = pareto(points)
    acc = acceptance(points)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(args, points, front, acc)
    (out / f"{args.stem}.md").write_text(md)
    common.save_result(args.out, f"{args.stem}.json", {
        "dataset": args.dataset, "scale": {k: getattr(args, k) for k in ("train_samples", "test_samples", "epochs",
                                                                           "ann_epochs", "lava_samples", "seed")},
        "tables": {k: TABLES[k] for k in (SNN_TABLE, INT8_TABLE, FP32_TABLE, *ARITH.values())},
        "base_config": BASE, "recipe": RECIPE, "points": points, "pareto": front, "acceptance": acc,
        "seconds": time.perf_counter() - t_start})
    plot(points, front, out / f"{args.stem}.png")
    print(md)
    print(f"wrote {out / (args.stem + '.md')}, {out / (args.stem + '.json')}, {out / (args.stem + '.png')}")


if __name__ == "__main__":
    main()
