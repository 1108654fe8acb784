"""Session reports for people: the tension table in the terminal and a PNG picture.

The picture has the finger forces over the session (one row per finger, time across) and the
six-region tension map before and after, laid out like the back (upper at the top, left/right of
the spine).
"""

from __future__ import annotations

from firmware.treatments.tension import REGION_NAMES as REGIONS
from firmware.treatments.tension import grade


def tension_table(before, after) -> str:
    lines = [f"{'region':<14}{'before':>10}{'after':>10}{'change':>9}  release"]
    for name, b, a in zip(REGIONS, before, after, strict=True):
        change = f"{(a - b) * 100 // b:+d}%" if b > 0 and a > 0 else "-"
        lines.append(f"{name:<14}{b:>10}{a:>10}{change:>9}  {grade(b, a)}")
    lines.append("(stiffness in cN/mm: how hard the fingers had to work per millimetre)")
    return "\n".join(lines)


def save_png(path, *, times_s, forces_cn, rows, cols, before, after, title, cap_cn):
    """Write the session picture. forces_cn: one list per sample, one value per finger."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array(forces_cn, dtype=float).T / 100.0  # newtons, finger x time
    fig = plt.figure(figsize=(12, 7.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 3, height_ratios=(3, 2))
    ax = fig.add_subplot(grid[0, :])
    minutes = np.array(times_s, dtype=float) / 60.0
    extent = (minutes[0], minutes[-1] if len(minutes) > 1 else 1.0, data.shape[0] - 0.5, -0.5)
    im = ax.imshow(
        data,
        aspect="auto",
        interpolation="nearest",
        extent=extent,
        cmap="magma",
        vmin=0,
        vmax=cap_cn / 100.0,
    )
    labels = [
        f"r{i // cols + 1}{'LR'[i % cols] if cols == 2 else i % cols}"
        for i in range(data.shape[0])
    ]
    ax.set_yticks(range(0, data.shape[0], max(1, data.shape[0] // 13)))
    ax.set_yticklabels(labels[:: max(1, data.shape[0] // 13)], fontsize=7)
    ax.set_xlabel("minutes")
    ax.set_ylabel("finger (row, side)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="force (N); colour scale ends at the force cap")

    vmax = max([1, *before, *after])
    for k, (label, values) in enumerate((("before", before), ("after", after))):
        axm = fig.add_subplot(grid[1, k])
        m = np.array(values, dtype=float).reshape(3, 2)
        axm.imshow(m, cmap="Reds", vmin=0, vmax=vmax)
        for r in range(3):
            for c in range(2):
                axm.text(c, r, f"{int(m[r, c])}", ha="center", va="center")
        axm.set_xticks((0, 1))
        axm.set_xticklabels(("left", "right"))
        axm.set_yticks((0, 1, 2))
        axm.set_yticklabels(("upper", "middle", "lower"))
        axm.set_title(f"tension {label} (cN/mm)")
    axb = fig.add_subplot(grid[1, 2])
    x = np.arange(len(REGIONS))
    axb.bar(x - 0.2, before, 0.4, label="before")
    axb.bar(x + 0.2, after, 0.4, label="after")
    axb.set_xticks(x)
    axb.set_xticklabels([r.replace("_", "\n") for r in REGIONS], fontsize=7)
    axb.set_ylabel("cN/mm")
    axb.legend(fontsize=8)
    axb.set_title("change per region")
    fig.savefig(path, dpi=90)
    plt.close(fig)
