"""Energy per inference of the Fashion-MNIST conv QSNN: float SNN, QSNN, pruned QSNN, ANN fp32 and int8.

Every number is an ESTIMATE: operation counts from the bit-exact reference simulation of the deployed
network (deploy.energy.count_ops, exact for conv, pooling and skip synapses) times per-operation energies of
45 nm CMOS (Horowitz, ISSCC 2014), under two cost models (docs/energy.md): arithmetic only (the rows below,
as before the issue #18 review), and the reviewed tables (*_mem: arithmetic at the operand widths + SRAM
traffic for both the SNN and the ANN). Static power and routing are in none of them. Rows:
  * float SNN: the same network and the SAME spike counts, with fp32 weights and state: every synop an fp32
    add (0.9 pJ), every neuron update fp32 arithmetic (2 mult + 4 add = 11.0 pJ); table cmos45_snn_fp32;
  * QSNN (the checkpoint's bits, 4 by default): integer synops at the 32-bit add (0.1 pJ, the nearest width
    to Loihi's 24-bit accumulator), neuron update 6.6 pJ; table cmos45_snn;
  * pruned QSNN: the same table on the channel-pruned checkpoint (bench/pruning.py), its own spike counts;
  * ANN fp32 / int8: the same layers as a conventional ANN, one pass: MACs of every dense and conv layer
    (4.6 / 0.23 pJ), pooling as max-pool comparisons and residual additions (fp32 0.9 / int8 0.03 pJ);
  * for reference, the QSNN on the Loihi 1 table (pre-silicon estimate, not Loihi 2).
Writes <out>/<stem>.{md,json,png} (per layer and total, with spike rates) and prints headline ratios.
Usage: python bench/energy.py [--checkpoint bench/results/fashion_conv.pt]
       [--pruned bench/results/fashion_conv_pruned.pt] [--samples 1000]
"""
import argparse
import sys
import time
from pathlib import Path

import common  # the sibling bench/common.py
import numpy as np

from qsnn_lava.converters.checkpoint import load_model, model_to_ir
from qsnn_lava.deployment.energy import TABLES, count_ops, energy, memory_bytes
from qsnn_lava.data import encoded, load_dataset
from qsnn_lava.io import save_figure
from qsnn_lava.reference import simulate

CAVEAT = ("Estimates: operation counts from the bit-exact simulation x per-operation energies of 45 nm CMOS "
          "(Horowitz, ISSCC 2014). Two cost models: arithmetic only (before the issue #18 review), and the reviewed "
          "one: arithmetic at the operand widths (interpolated from Horowitz's 8- and 32-bit entries) plus SRAM "
          "traffic at the 8 KB cache's 10 pJ per 64 bits, counted by one rule for the SNN and the ANN (a weight "
          "read per synop or MAC, SNN u/v read and written per neuron update, activation maps). Static power, "
          "spike routing and I/O are not included. The Loihi 1 row is a pre-silicon Loihi 1 cost "
          "table applied to this network, not a Loihi 2 number.")


def measure(path, data, samples: int, quiet: bool) -> dict:
    """Op counts (``deploy.energy.count_ops``) of the deployed network of the checkpoint ``path`` on the first
    ``samples`` test inputs of ``data``, with its accuracy on them; ``quiet``: no progress bar."""
    model, ckpt = load_model(path)
    net = model_to_ir(model)
    x, y = encoded(data.test, net.timesteps, min(samples, len(data.test.y)), input_bits=net.input_bits)
    t0 = time.perf_counter()
    rec = simulate(net, x, progress=not quiet)
    counts = count_ops(net, x, rec)
    cfg = model.config
    return {"path": str(path), "net": net, "counts": counts, "accuracy": rec.accuracy(y), "bits": int(cfg["bits"]),
            "arch": cfg["arch"], "channels": cfg.get("channels"), "widths": cfg.get("widths") or {},
            "timesteps": net.timesteps, "seconds": time.perf_counter() - t0}


# the cost model: "arith" = the arithmetic-only tables (before the issue #18 review), "mem" = the reviewed
# tables (operand-width arithmetic + SRAM traffic for both the SNN and the ANN; docs/energy.md)
MODELS = {"arith": {"float_snn": "cmos45_snn_fp32", "qsnn": "cmos45_snn", "ann_fp32": "ann_fp32", "ann_int8": "ann_int8"},
          "mem": {"float_snn": "cmos45_snn_fp32_mem", "qsnn": "cmos45_snn_mem", "ann_fp32": "ann_fp32_mem",
                  "ann_int8": "ann_int8_mem"}}


def targets(q: dict, pruned: dict | None, model: str = "arith") -> list:
    """The rows of cost model ``model`` ("arith" or "mem", ``MODELS``): (key, label, measured network, cost
    table, weight memory in bytes); the Loihi 1 row only with "arith"."""
    b, t = q["bits"], MODELS[model]
    rows = [("float_snn", "float SNN (fp32)", q, t["float_snn"], memory_bytes(q["counts"], 32, 64)),
            ("qsnn", f"{b}-bit QSNN", q, t["qsnn"], memory_bytes(q["counts"]))]
    if pruned is not None:
        rows.append(("qsnn_pruned", f"{pruned['bits']}-bit pruned QSNN", pruned, t["qsnn"],
                     memory_bytes(pruned["counts"])))
    rows += [("ann_fp32", "ANN fp32", q, t["ann_fp32"], memory_bytes(q["counts"], 32, ann=True)),
             ("ann_int8", "ANN int8", q, t["ann_int8"], memory_bytes(q["counts"], 8, ann=True))]
    if model == "arith":
        rows.append(("qsnn_loihi1", f"{b}-bit QSNN, Loihi 1 table", q, "loihi1", memory_bytes(q["counts"])))
    out = []
    for key, label, m, table, mem in rows:
        e = energy(m["counts"], TABLES[table])
        t = m["counts"]["total"]
        ops = t["synops_effective"] if TABLES[table]["kind"] == "snn" else t["ann_macs"] + t["ann_adds"]
        out.append({"key": key, "model": model, "label": label, "network": "pruned" if m is pruned else "qsnn",
                    "table": table,
                    "table_label": e["label"], "source": e["source"], "uJ": e["total"]["uJ"],
                    "parts_pJ": e["total"]["parts_pJ"], "ops": ops, "memory_bytes": mem,
                    "accuracy": m["accuracy"] if TABLES[table]["kind"] == "snn" else None,
                    "layers": {layer["name"]: layer["pJ"] for layer in e["layers"]}})
    return out


def ratios(rows: list) -> dict:
    """Headline energy ratios between the rows (``targets``'s, each with "key" and "uJ" per inference):
    ANN fp32 / QSNN, ANN int8 / QSNN, float SNN / QSNN, ANN fp32 / float SNN, and, when a pruned QSNN was
    measured, QSNN / pruned and ANN int8 / pruned."""
    e = {r["key"]: r["uJ"] for r in rows}
    out = {"ann_fp32_over_qsnn": e["ann_fp32"] / e["qsnn"], "ann_int8_over_qsnn": e["ann_int8"] / e["qsnn"],
           "float_snn_over_qsnn": e["float_snn"] / e["qsnn"], "ann_fp32_over_float_snn": e["ann_fp32"] / e["float_snn"]}
    if "qsnn_pruned" in e:
        out.update({"qsnn_over_pruned": e["qsnn"] / e["qsnn_pruned"],
                    "ann_int8_over_pruned": e["ann_int8"] / e["qsnn_pruned"]})
    return out


def _than(ratio: float, other: str) -> str:
    """'3.2x less energy than X' for ratio = E(X) / E(this) >= 1, else '2.5x more energy than X'."""
    return (f"{ratio:.3g}x less energy than {other}" if ratio >= 1
            else f"{1 / ratio:.3g}x MORE energy than {other}")


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f} %"


def layer_table(m: dict, rows: list) -> list:
    """Markdown lines: one row per layer of measurement ``m``, energies in nJ of the rows measured on it."""
    mine = [r for r in rows if r["network"] == ("pruned" if "pruned" in m.get("role", "") else "qsnn")
            and r["key"] != "qsnn_loihi1"]
    head = ("| layer | kind | neurons | input rate | firing rate | SynOps (effective) | SynOps (dense) | ANN MACs "
            "| ANN adds | " + " | ".join(f"{r['label']}{' +mem' if r['model'] == 'mem' else ''} (nJ)" for r in mine)
            + " |")
    lines = [head, "|" + "---|" * (9 + len(mine))]
    for layer in m["counts"]["layers"]:
        cells = [layer["name"], layer["kind"], str(layer["n"]), f"{layer['input_rate']:.4f}",
                 f"{layer['firing_rate']:.4f}", f"{layer['synops_effective']:.4g}", f"{layer['synops_dense']:.4g}",
                 str(layer["ann_macs"]), str(layer["ann_adds"])]
        cells += [f"{r['layers'][layer['name']] / 1e3:.4g}" for r in mine]
        lines.append("| " + " | ".join(cells) + " |")
    t = m["counts"]["total"]
    cells = ["**total**", "", str(sum(layer["n"] for layer in m["counts"]["layers"])), f"{t['input_rate']:.4f}",
             f"{t['firing_rate']:.4f}", f"{t['synops_effective']:.4g}", f"{t['synops_dense']:.4g}",
             str(t["ann_macs"]), str(t["ann_adds"])] + [f"{r['uJ'] * 1e3:.4g}" for r in mine]
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(args, q: dict, pruned: dict | None, rows: list, rat: dict, missing: str) -> str:
    """The bench's markdown report: the caveat, one row per target (energy in uJ per inference, ratio to the
    QSNN, ops, memory in KB, accuracy), per-layer tables of ``q`` and ``pruned`` (measurements, the latter
    may be None), the ratios ``rat`` and the note ``missing`` (why a pruned network is absent, or "")."""
    n = q["counts"]["samples"]
    md = [f"# Energy per inference: {q['arch']} QSNN on {args.dataset} ({n} test samples, T = {q['timesteps']})",
          "", CAVEAT, ""]
    titles = {"arith": "Before the review: arithmetic only (memory access excluded)",
              "mem": "After the review: arithmetic at operand width + SRAM traffic, both SNN and ANN"}
    for model in MODELS:
        mine = [r for r in rows if r["model"] == model]
        md += [f"## {titles[model]}", "",
               "| target | network | cost table | energy / inference (uJ) | ratio to QSNN | ops / inference "
               "| weight + state memory (KB) | accuracy |", "|---|---|---|---:|---:|---:|---:|---:|"]
        ref = next(r["uJ"] for r in mine if r["key"] == "qsnn")
        for r in mine:
            kind = "SynOps" if TABLES[r["table"]]["kind"] == "snn" else "MACs + adds"
            md.append(f"| {r['label']} | {r['network']} | {r['table']} | {r['uJ']:.4g} | {r['uJ'] / ref:.3g} "
                      f"| {r['ops']:.4g} {kind} | {r['memory_bytes'] / 1024:.4g} | "
                      f"{_pct(r['accuracy'])} |")
        md += ["", "Headline ratios (energy): " + ", ".join(f"{k} = {v:.3g}" for k, v in rat[model].items()), ""]
    if missing:
        md += [missing, ""]
    md += [f"## Per layer: {q['bits']}-bit QSNN ({q['path']}); the float SNN and ANN rows use its counts", ""]
    md += layer_table(q, rows)
    if pruned is not None:
        md += ["", f"## Per layer: pruned QSNN ({pruned['path']}, widths {pruned['widths']})", ""]
        md += layer_table(pruned, rows)
    md += ["", "Definitions (docs/energy.md): rates are spikes per neuron per step; SynOps (effective) count one "
           "accumulate per input spike per nonzero synapse (dense: all structural fan-out); ANN MACs count every "
           "dense / conv multiply-accumulate of one pass (padded positions included); ANN adds are max-pool "
           "comparisons and residual additions. Memory: QSNN weights at their trained bits (pool weights 1 bit) "
           "+ 48-bit u, v per neuron; float SNN every weight at 32 bits + 64-bit state; ANN learned weights at "
           "32 / 8 bits (activations not counted)."]
    return "\n".join(md) + "\n"


def chart(rows: list, q: dict, path) -> None:
    """Left: total uJ per inference per target (log). Right: nJ per layer for the main targets (log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"float_snn": "tab:red", "qsnn": "tab:orange", "qsnn_pruned": "tab:olive", "ann_fp32": "tab:blue",
              "ann_int8": "tab:cyan", "qsnn_loihi1": "tab:gray"}
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1, 1.6]})
    names = [r["label"] + (" (+mem)" if r["model"] == "mem" else "") for r in rows]
    bars = a.bar(names, [r["uJ"] for r in rows], color=[colors[r["key"]] for r in rows])
    for bar, r in zip(bars, rows):
        bar.set_alpha(1.0 if r["model"] == "mem" else 0.45)
    a.set_yscale("log")
    for bar, r in zip(bars, rows):
        a.annotate(f"{r['uJ']:.3g}", (bar.get_x() + bar.get_width() / 2, r["uJ"]), ha="center", va="bottom",
                   fontsize=8)
    a.set_ylabel("uJ per inference (estimate)")
    a.set_title("Total: pale = arithmetic only, solid = + SRAM traffic (gray: Loihi 1 table)", fontsize=9)
    a.tick_params(axis="x", labelsize=7, rotation=30)
    names = [layer["name"] for layer in q["counts"]["layers"]]
    shown = [r for r in rows if r["key"] != "qsnn_loihi1"]
    width = 0.8 / len(shown)
    xs = np.arange(len(names))
    for k, r in enumerate(shown):
        vals = [r["layers"].get(nm, np.nan) / 1e3 for nm in names]
        b.bar(xs + (k - (len(shown) - 1) / 2) * width, vals, width, label=r["label"], color=colors[r["key"]],
              alpha=1.0 if r["model"] == "mem" else 0.45)
    b.set_xticks(xs, names, fontsize=8)
    b.set_yscale("log")
    b.set_ylabel("nJ per inference (estimate)")
    b.set_title("Per layer", fontsize=9)
    b.legend(fontsize=7)
    fig.suptitle("Estimated energy per inference: op counts x 45 nm CMOS cost tables (Horowitz ISSCC 2014)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def _public(m: dict | None) -> dict | None:
    return None if m is None else {k: v for k, v in m.items() if k != "net"}


def main(argv=None):
    """Run the energy bench with command-line arguments ``argv`` (None: sys.argv); writes
    ``<out>/<stem>.{md,json,png}`` (``--out``, ``--stem``; default bench/results/energy)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="bench/results/fashion_conv.pt")
    ap.add_argument("--pruned", default="bench/results/fashion_conv_pruned.pt",
                    help="the channel-pruned checkpoint (bench/pruning.py); its row is skipped when missing")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--stem", default="energy", help="output names: <out>/<stem>.{md,json,png}")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        sys.exit(f"checkpoint '{args.checkpoint}' not found: run bench/fashion_mnist.py first")
    data = load_dataset(args.dataset)
    q = measure(args.checkpoint, data, args.samples, args.quiet)
    q["role"] = "qsnn"
    pruned, missing = None, ""
    if args.pruned and Path(args.pruned).is_file():
        pruned = measure(args.pruned, data, args.samples, args.quiet)
        pruned["role"] = "pruned"
    else:
        missing = (f"Pruned checkpoint '{args.pruned}' not found (bench/pruning.py writes it): "
                   "the pruned QSNN row is skipped.")
        print(missing)
    rows = targets(q, pruned, "arith") + targets(q, pruned, "mem")
    rat = {model: ratios([r for r in rows if r["model"] == model]) for model in MODELS}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(args, q, pruned, rows, rat, missing)
    (out / f"{args.stem}.md").write_text(md)
    common.save_result(args.out, f"{args.stem}.json", {
        "dataset": args.dataset, "samples": q["counts"]["samples"], "caveat": CAVEAT,
        "tables": {r["table"]: TABLES[r["table"]] for r in rows},
        "targets": rows, "ratios": rat, "pruned_missing": missing or None,
        "qsnn": _public(q), "pruned": _public(pruned)})
    chart(rows, q, out / f"{args.stem}.png")
    print(md)
    t = q["counts"]["total"]
    for model, what in (("arith", "arithmetic only (before the review)"), ("mem", "with memory traffic (reviewed)")):
        r = rat[model]
        print(f"headline ({q['counts']['samples']} samples, mean firing rate {100 * t['firing_rate']:.2f} %, "
              f"input rate {100 * t['input_rate']:.2f} %; estimates, {what}): the {q['bits']}-bit QSNN uses "
              f"{_than(r['ann_fp32_over_qsnn'], 'the fp32 ANN')}, {_than(r['ann_int8_over_qsnn'], 'the int8 ANN')}, "
              f"{_than(r['float_snn_over_qsnn'], 'the float SNN')}"
              + (f"; the pruned QSNN uses {_than(r['qsnn_over_pruned'], 'the unpruned QSNN')}"
                 if pruned is not None else ""))
    print(f"wrote {out / (args.stem + '.md')}, {out / (args.stem + '.json')}, {out / (args.stem + '.png')}")


if __name__ == "__main__":
    main()
