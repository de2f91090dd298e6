"""Pictures people would rather see than read: spike rasters of two backends side by side."""
from __future__ import annotations

import numpy as np

from qsnn_lava.io import atomic_write
from qsnn_lava.record import Record


def raster(records: list[Record], inputs: np.ndarray, path, sample: int = 0) -> None:
    """One column per backend, one row per layer (input first); dots are spikes of one sample."""
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
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
