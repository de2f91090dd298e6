"""Pictures people would rather see than read: spike rasters of two backends side by side."""
from __future__ import annotations

import numpy as np

from qsnn_lava.io import atomic_write, save_figure
from qsnn_lava.record import Record


def raster(records: list[Record], inputs: np.ndarray, path=None, sample: int = 0):
    """Spike rasters of ``records`` side by side, saved as a PNG at ``path``: one column per backend, one row per
    layer (``inputs`` [T, N, n_in] first); dots are the spikes of sample ``sample`` over the time steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 1 + len(records[0].spikes)
    fig, axes = plt.subplots(rows, len(records), figsize=(4 * len(records), 1.6 * rows), squeeze=False,
                             sharex=True)
    for c, rec in enumerate(records):
        layers = [("input", inputs)] + list(zip(rec.layer_names, rec.spikes))
        for r, (name, s) in enumerate(layers):
            ax = axes[r][c]
            t, j = np.nonzero(s[:, sample])
            ax.scatter(t, j, s=4, marker="|", color="k")
            ax.set_ylim(-1, s.shape[2])
            ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"{rec.backend} (sample {sample})", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("time step")
    fig.tight_layout()
    return save_figure(fig, path)


def mismatch_heatmap(records: list[Record], path=None):
    """Per consecutive pair of ``records``: mismatching spike events per (layer, time step), summed over the
    samples both hold, as a heat map saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(zip(records[:-1], records[1:]))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 2.6), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
        n = min(a.samples, b.samples)
        grid = np.array([(sa[:, :n] != sb[:, :n]).sum(axis=(1, 2)) for sa, sb in zip(a.spikes, b.spikes)])
        im = ax.imshow(grid, aspect="auto", cmap="Reds", vmin=0, vmax=max(1, grid.max()))
        ax.set_yticks(range(len(a.layer_names)), a.layer_names, fontsize=8)
        ax.set_xlabel("time step")
        ax.set_title(f"{a.backend} vs {b.backend}: {int(grid.sum())} mismatches", fontsize=9)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return save_figure(fig, path)


def html_report(rep: dict, images: dict, path) -> None:
    """A self-contained HTML file at ``path``: the verify report ``rep``'s accuracy and comparison tables, the
    PNGs of ``images`` ({title: png path}) embedded as base64, and the full report as JSON."""
    import base64
    import html
    import json

    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{100 * v:.2f} %</td></tr>" for k, v in rep["accuracy"].items())
    comp = ""
    for k, c in rep["comparisons"].items():
        fd = c["first_divergence"]
        where = "-" if fd is None else (f"sample {fd['sample']}, layer {html.escape(fd['layer'])}, "
                                        f"neuron {fd['neuron']}, step {fd['timestep']}")
        cause = c.get("diagnosis", {}).get("likely_cause", "-")
        comp += (f"<tr><td>{html.escape(k)}</td><td>{c['samples']}</td><td>{c['mismatches']}</td>"
                 f"<td>{where}</td><td>{html.escape(cause)}</td></tr>")
    imgs = "".join(
        f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,"
        f"{base64.b64encode(open(p, 'rb').read()).decode()}'/>" for title, p in images.items())
    verdict = "EQUIVALENT" if rep["equivalent"] else "NOT EQUIVALENT"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>qsnn-lava verify</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px}}
table{{border-collapse:collapse}}</style></head><body>
<h1>qsnn-lava verify: {verdict}</h1>
<table><tr><th>backend</th><th>accuracy</th></tr>{rows}</table>
<h2>Spike comparison</h2>
<table><tr><th>pair</th><th>samples</th><th>mismatches</th><th>first divergence</th><th>likely cause</th></tr>
{comp}</table>{imgs}
<h2>Full report</h2><pre>{html.escape(json.dumps(rep, indent=1, sort_keys=True))}</pre></body></html>"""
    with atomic_write(path) as tmp:
        tmp.write_text(doc)
