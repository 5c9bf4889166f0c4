"""The two pictures people read first: per-class scores with the held-out classes marked, and the held-out
classes' precision-recall curves (matplotlib, PNG, written atomically)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..data.atomic import save_with

SEEN, HELD_OUT = "#4c72b0", "#dd8452"


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")  # files only; no display is needed or assumed
    import matplotlib.pyplot as plt

    return plt, plt.subplots(figsize=(width, height))


def per_class_bars(names: list[str], values: np.ndarray, held_out: list[str], ylabel: str, title: str, path: Path) -> Path:
    """One bar per class (NaN: no bar, name greyed), held-out classes in their own colour."""
    plt, (fig, ax) = _figure(max(6.0, 0.22 * len(names) + 1.5), 4.2)
    heights = [0.0 if math.isnan(v) else float(v) for v in values]
    ax.bar(range(len(names)), heights, color=[HELD_OUT if n in held_out else SEEN for n in names])
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7 if len(names) > 40 else 9)
    for tick, v in zip(ax.get_xticklabels(), values, strict=True):
        if math.isnan(v):
            tick.set_color("0.6")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in (SEEN, HELD_OUT)], labels=["seen / base", "held out"],
              loc="upper right", fontsize=8)
    fig.tight_layout()
    save_with(lambda fh: fig.savefig(fh, format="png", dpi=110), path)
    plt.close(fig)
    return path


def pr_curves(names: list[str], recall: np.ndarray, precision: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Precision at each recall threshold (IoU 0.5) for the given classes; -1 (no ground truth) is left out."""
    plt, (fig, ax) = _figure(6.0, 4.5)
    for name in names:
        p = np.asarray(precision[name], dtype=float)
        if (p > -1).any():
            ax.plot(recall, np.where(p > -1, p, np.nan), label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    if names:
        ax.legend(fontsize=7, ncol=2 if len(names) > 8 else 1)
    fig.tight_layout()
    save_with(lambda fh: fig.savefig(fh, format="png", dpi=110), path)
    plt.close(fig)
    return path
