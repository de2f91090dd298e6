"""Structured pruning on Fashion-MNIST: SVS vs SCA vs random at several ratios, the same fine-tune budget.

A VGG-style conv QSNN (channels 16 32, 4-bit uniform weights, BatchNorm folded, LIF, T = 4) is trained
briefly (or loaded with --checkpoint), scored by each criterion on --batches training batches, pruned at
each ratio (every prunable layer: conv1 and conv2), fine-tuned with the same budget (default 1 epoch on a
15,000-image training subset, Adam lr 1e-3), and evaluated on the test set. Reported per criterion and
ratio: test accuracy before and after fine-tuning, parameters, model size (QP-SNN Eq. 16), SynOps and
spikes per inference (measured on the reference simulator of the deployed IR), and per criterion the
across-batch stability of its scores (mean cosine similarity between the score vectors of different
batches, as QP-SNN Fig. 4). Control: the unpruned network fine-tuned with the same budget.
Writes bench/results/pruning.{json,md}, pruning.png and the svs 0.5 network as fashion_conv_pruned.pt.

Usage: python bench/pruning.py [--checkpoint CKPT] [--epochs 2] [--finetune-samples 15000]
Smoke run: python bench/pruning.py --train-samples 256 --epochs 1 --finetune-samples 128 \
           --test-samples 128 --synops-samples 32 --ratios 0.5 --out /tmp/pruning
"""
import argparse
import time
from pathlib import Path

import common  # the sibling bench/common.py
import numpy as np

from qsnn_lava.converters.checkpoint import load_model, model_to_ir
from qsnn_lava.deployment.verify import compare
from qsnn_lava import pruning as P
from qsnn_lava.data import Dataset, encoded, load_dataset
from qsnn_lava.errors import QsnnError
from qsnn_lava.io import atomic_write, save_checkpoint, save_figure
from qsnn_lava.models import make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train


def restrict(data, train_n=None, test_n=None, seed=0):
    """``data`` (a ``data.Dataset``) with a ``seed``-ed draw of ``train_n`` training samples and the first
    ``test_n`` test samples (None: all of them)."""
    tr, te = data.train, data.test
    if train_n is not None and train_n < len(tr.y):
        tr = P.subset(tr, np.sort(np.random.default_rng(seed).permutation(len(tr.y))[:train_n]))
    if test_n is not None and test_n < len(te.y):
        te = P.subset(te, np.arange(test_n))
    return Dataset(data.name, tr, te, data.n_in, data.n_classes, data.shape)


def plot(result, path):
    """Test accuracy after fine-tuning (%) and SynOps per inference (thousands) against the pruning ratio, one
    line per criterion and the unpruned control dashed; ``result``: the bench result; saved as a PNG at
    ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for crit, runs in result["criteria"].items():
        r = [row["ratio"] for row in runs["rows"]]
        a1.plot(r, [100 * row["accuracy_finetuned"] for row in runs["rows"]], "o-", label=crit)
        a2.plot(r, [row["synops"] / 1e3 for row in runs["rows"]], "o-", label=crit)
    a1.axhline(100 * result["control"]["accuracy_finetuned"], color="k", ls="--", lw=1,
               label="unpruned, same fine-tune")
    a2.axhline(result["control"]["synops"] / 1e3, color="k", ls="--", lw=1, label="unpruned")
    a1.set(xlabel="pruning ratio (every prunable layer)", ylabel="test accuracy after fine-tuning (%)",
           title="Fashion-MNIST, " + result["network"])
    a2.set(xlabel="pruning ratio", ylabel="SynOps per inference (thousands)", title="measured SynOps")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(result) -> str:
    """The bench's markdown report of ``result``: per criterion and ratio, accuracies before and after
    fine-tuning, parameters, model size (kB, QP-SNN Eq. 16), SynOps and spikes per inference."""
    c = result["control"]
    lines = [f"# Structured pruning on Fashion-MNIST ({result['network']})", "",
             f"Base network: {100 * result['base']['accuracy']:.2f} % on {result['test_samples']} test images, "
             f"{c['params']} parameters, {c['size_kbytes']:.2f} kB (Eq. 16), {c['synops']:.0f} SynOps / inference. "
             f"Fine-tune budget for every row: {result['finetune']['epochs']} epoch(s) on "
             f"{result['finetune']['samples']} training images, Adam lr {result['finetune']['lr']}. "
             f"Unpruned with the same fine-tune: {100 * c['accuracy_finetuned']:.2f} %.", "",
             "| criterion | ratio | widths | acc. pruned (%) | acc. fine-tuned (%) | params | size (kB) | SynOps "
             "| spikes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for crit, runs in result["criteria"].items():
        for row in runs["rows"]:
            widths = ", ".join(f"{k} {v}" for k, v in row["widths"].items())
            lines.append(f"| {crit} | {row['ratio']:g} | {widths} | {100 * row['accuracy_pruned']:.2f} | "
                         f"{100 * row['accuracy_finetuned']:.2f} | {row['params']} | {row['size_kbytes']:.2f} | "
                         f"{row['synops']:.0f} | {row['spikes']:.0f} |")
    lines += ["", "Score stability across batches (mean cosine similarity of the per-batch score vectors; random is "
              "the chance level for non-negative scores):", "",
              "| criterion | " + " | ".join(result["prunable"]) + " | mean |",
              "|---|" + "---|" * (len(result["prunable"]) + 1)]
    for crit, runs in result["criteria"].items():
        s = runs["stability"]
        lines.append(f"| {crit} | " + " | ".join(f"{s[g]:.4f}" for g in result["prunable"]) + f" | {s['mean']:.4f} |")
    lines += ["", f"SynOps and spikes per inference on the first {result['synops_samples']} test images (reference "
              "simulator of the deployed IR, every (spike, nonzero synapse) event, pooling included). "
              f"Checkpoint of the svs {result['saved']['ratio']:g} network: `{result['saved']['path']}` "
              f"(torch vs reference: {result['saved']['torch_vs_reference_mismatches']} spike mismatches"
              + (f"; reference vs Lava on {result['saved']['lava_samples']}: "
                 f"{result['saved']['reference_vs_lava_mismatches']}" if result['saved'].get('lava_samples') else "")
              + ").", ""]
    return "\n".join(lines)


def main():
    """Parse the command line, train or load the base network, prune it by every criterion at every ratio,
    fine-tune, evaluate, and write pruning.{json,md,png} (and the svs network) under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="prune this Fashion-MNIST checkpoint instead of training one")
    ap.add_argument("--channels", type=int, nargs=2, default=[16, 32])
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs of the base network")
    ap.add_argument("--train-samples", type=int, default=None, help="base training on a subset (default all)")
    ap.add_argument("--lr", type=float, default=5e-3, help="base training learning rate")
    ap.add_argument("--criteria", default="svs,sca,random")
    ap.add_argument("--ratios", default="0.3,0.5,0.7")
    ap.add_argument("--batches", type=int, default=4, help="scoring batches")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--finetune-samples", type=int, default=15000)
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    ap.add_argument("--test-samples", type=int, default=None, help="default: all 10,000")
    ap.add_argument("--synops-samples", type=int, default=512)
    ap.add_argument("--lava-samples", type=int, default=0, help="also run the saved svs network on Lava")
    ap.add_argument("--save-ratio", type=float, default=0.5, help="the svs ratio saved as fashion_conv_pruned.pt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    criteria = [c for c in args.criteria.split(",") if c]
    ratios = [float(r) for r in args.ratios.split(",") if r]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    full = load_dataset("fashion-mnist")
    t0 = time.perf_counter()
    if args.checkpoint:
        model, ckpt = load_model(args.checkpoint)
        base_epochs = int(ckpt["meta"].get("epochs", 0) or 0)
    else:
        cfg = make_config(arch="vgg", sizes=[full.n_in, full.n_classes], input_shape=full.shape,
                          channels=args.channels, bits=args.bits, timesteps=args.timesteps)
        base = restrict(full, args.train_samples, args.test_samples, args.seed)
        model, hist = train(cfg, base, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        base_epochs = args.epochs
        save_checkpoint(out / "fashion_vgg_base.pt", cfg, model.state_dict(),
                        {"dataset": "fashion-mnist", "epochs": args.epochs, "train_samples": args.train_samples,
                         "test_accuracy": hist["test_acc"][-1], "train_seconds": hist["seconds"]})
        print(f"base: {hist['test_acc'][-1]:.4f} after {args.epochs} epochs ({hist['seconds']:.0f} s) -> "
              f"{out / 'fashion_vgg_base.pt'}")
    cfg = model.config
    T = int(cfg["timesteps"])
    data = restrict(full, None, args.test_samples)
    ft_data = restrict(full, args.finetune_samples, args.test_samples, args.seed + 1)
    x, y = encoded(data.test, T)
    xs = x[:, :args.synops_samples]
    groups = P.prunable_groups(model)
    names = ["+".join(g) for g in groups]
    base_acc = evaluate(model, x).accuracy(y)

    def finetune(m):
        return train(m.config, ft_data, epochs=args.finetune_epochs, batch_size=args.batch_size,
                     lr=args.finetune_lr, seed=args.seed, progress=False, init_state=m.state_dict(),
                     epoch_offset=base_epochs)

    def measures(m):
        s = P.summarize(model_to_ir(m, validate=False), xs)["total"]
        return {"params": s["params"], "size_kbytes": s["size_kbytes"], "synops": s["synops"],
                "spikes": s["spikes"], "neurons": s["neurons"]}

    ctl, ctl_hist = finetune(model) if args.finetune_epochs > 0 else (model, {"test_acc": [base_acc]})
    result = {
        "network": f"{cfg['arch']} {cfg['channels']}, {cfg['bits']}-bit {cfg['quant']}, T = {T}",
        "base": {"checkpoint": args.checkpoint or str(out / "fashion_vgg_base.pt"), "accuracy": base_acc,
                 **measures(model)},
        "control": {"accuracy_finetuned": ctl_hist["test_acc"][-1], **measures(ctl)},
        "finetune": {"epochs": args.finetune_epochs, "samples": len(ft_data.train.y), "lr": args.finetune_lr,
                     "batch_size": args.batch_size},
        "scoring": {"batches": args.batches, "batch_size": args.batch_size},
        "test_samples": int(x.shape[1]), "synops_samples": int(xs.shape[1]),
        "prunable": names, "criteria": {},
    }
    print(f"base {100 * base_acc:.2f} %, unpruned + same fine-tune {100 * ctl_hist['test_acc'][-1]:.2f} %")
    batches = P.scoring_batches(full, T, args.batches, args.batch_size, args.seed)
    saved = None
    for crit in criteria:
        ts = time.perf_counter()
        scores = P.score_channels(model, batches, crit, args.seed)
        stab = {n: P.stability(s["per_batch"]) for n, s in zip(names, scores)}
        stab["mean"] = float(np.mean([stab[n] for n in names]))
        runs = {"stability": stab, "score_seconds": time.perf_counter() - ts, "rows": []}
        for r in ratios:
            try:
                pruned, plan = P.prune_model(model, scores, r)
            except QsnnError as e:
                print(f"{crit} {r}: skipped ({e})")
                continue
            acc_pruned = evaluate(pruned, x).accuracy(y)
            tf = time.perf_counter()
            if args.finetune_epochs > 0:
                pruned, hist = finetune(pruned)
                acc = hist["test_acc"][-1]
            else:
                acc = acc_pruned
            row = {"ratio": r, "widths": {n: g["keep"] for n, g in zip(names, plan)},
                   "accuracy_pruned": acc_pruned, "accuracy_finetuned": acc,
                   "finetune_seconds": time.perf_counter() - tf, **measures(pruned)}
            runs["rows"].append(row)
            print(f"{crit} {r:g}: {row['widths']} pruned {100 * acc_pruned:.2f} % -> fine-tuned {100 * acc:.2f} %, "
                  f"{row['params']} params, {row['synops']:.0f} SynOps")
            if crit == "svs" and abs(r - args.save_ratio) < 1e-9:
                saved = (pruned, r, plan)
        result["criteria"][crit] = runs

    result["saved"] = {"ratio": args.save_ratio, "path": None, "torch_vs_reference_mismatches": None}
    if saved is not None:
        pruned, r, plan = saved
        path = out / "fashion_conv_pruned.pt"
        acc = next(row["accuracy_finetuned"] for row in result["criteria"]["svs"]["rows"] if row["ratio"] == r)
        save_checkpoint(path, pruned.config, pruned.state_dict(),
                        {"dataset": "fashion-mnist", "epochs": base_epochs + args.finetune_epochs,
                         "test_accuracy": acc,
                         "pruning": {"criterion": "svs", "ratios": [g["ratio"] for g in plan],
                                     "finetune_epochs": args.finetune_epochs, "source": result["base"]["checkpoint"],
                                     "widths": {n: [g["width"], g["keep"]] for n, g in zip(names, plan)}}})
        net = model_to_ir(pruned)
        ref = simulate(net, xs)
        result["saved"].update({"path": str(path),
                                "torch_vs_reference_mismatches": compare(evaluate(pruned, xs), ref)["mismatches"]})
        if args.lava_samples:
            from qsnn_lava.deployment.backends.lava import run as run_lava

            n = args.lava_samples
            result["saved"].update({"lava_samples": n, "reference_vs_lava_mismatches":
                                    compare(simulate(net, x[:, :n]), run_lava(net, x[:, :n]))["mismatches"]})
    result["seconds"] = time.perf_counter() - t0
    common.save_result(args.out, "pruning.json", result)
    md = markdown(result)
    with atomic_write(out / "pruning.md") as tmp:
        tmp.write_text(md)
    plot(result, out / "pruning.png")
    print(md)
    print(f"wrote {out / 'pruning.json'}, {out / 'pruning.md'}, {out / 'pruning.png'}")


if __name__ == "__main__":
    main()
