"""Pictures people would rather look at than read: sample grids, schedule heatmaps."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from gocopt.atomic import atomic_path


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display here, none needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, dpi: int) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png", bbox_inches="tight")
    plt.close(fig)


def save_image_grid(images: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None,
                    columns: int = 10) -> None:
    """Images ``(N, C, H, W)`` in [-1, 1] → one PNG grid (first channel, ink dark), labelled by class."""
    plt = _pyplot()

    n = len(images)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.9), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].float().cpu().numpy(), cmap="gray_r", vmin=-1, vmax=1)
            if labels is not None:
                ax.set_title(str(int(labels[i])), fontsize=7)
    _save(fig, path, dpi=100)


def save_schedule_heatmap(schedule, path: str | Path, site_labels=None) -> None:
    """Step × site heatmap of a schedule (dark = computed, light = reused), with the reused
    fraction of each step beside it and GOC correction steps marked."""
    plt = _pyplot()
    import numpy as np

    mask = np.asarray(schedule.mask, dtype=float)
    steps, sites = mask.shape
    fig, (ax, bar) = plt.subplots(1, 2, figsize=(min(16, 3 + sites * 0.18), 1.5 + steps * 0.22),
                                  gridspec_kw={"width_ratios": [max(4, sites // 4), 1]}, sharey=True)
    ax.imshow(mask, aspect="auto", cmap="Blues", vmin=-0.3, vmax=1.0, interpolation="nearest")
    ax.set_xlabel("cache site")
    ax.set_ylabel("sampling step")
    labels = list(site_labels) if site_labels is not None else list(schedule.site_ids)
    stride = max(1, sites // 24)
    ax.set_xticks(range(0, sites, stride))
    ax.set_xticklabels(labels[::stride], rotation=90, fontsize=6)
    ax.set_yticks(range(steps))
    corrected = {s for s, row in enumerate(schedule.predictor.actions(schedule.mask))
                 if any(a is not None and not a.is_plain for a in row)}
    ax.set_yticklabels([f"{s}{' *' if s in corrected else ''}" for s in range(steps)], fontsize=6)
    reused = 1.0 - mask.mean(axis=1)
    bar.barh(range(steps), reused, color="tab:orange")
    bar.set_xlim(0, 1)
    bar.set_xlabel("reused")
    ax.set_title(f"{schedule.name or 'schedule'}: dark = compute, light = reuse, * = a predicted (not plainly "
                 "reused) value", fontsize=8)
    _save(fig, path, dpi=110)


def save_calibration_plot(stats, path: str | Path, inflections=()) -> None:
    """Per step: relative change of each site kind's output (log scale), and the direction
    cosine of consecutive changes; detected inflection points marked."""
    plt = _pyplot()

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for kind, frame in stats.groupby("kind"):
        by_step = frame.groupby("step")
        top.plot(by_step["rel_change"].median(), marker="o", ms=3, label=f"{kind} (median over sites)")
        top.fill_between(by_step["rel_change"].quantile(0.1).index, by_step["rel_change"].quantile(0.1),
                         by_step["rel_change"].quantile(0.9), alpha=0.15)
        bottom.plot(by_step["direction_cos"].median(), marker="o", ms=3, label=kind)
    err = stats.groupby("step")[[c for c in stats.columns if c.startswith("err_goc_w0.8")]].median()
    if not err.empty:
        top.plot(err.iloc[:, 0], "k--", lw=1, label="GOC w=0.8 one-step error (median)")
    top.set_yscale("log")
    top.set_ylabel("‖F[s] − F[s−1]‖ / ‖F[s]‖")
    top.legend(fontsize=7)
    bottom.axhline(0, color="grey", lw=0.5)
    for step in inflections:
        for ax in (top, bottom):
            ax.axvline(step, color="red", lw=0.8, ls=":")
    bottom.set_ylabel("cos(d[s], d[s−1])")
    bottom.set_xlabel("sampling step (red: detected inflection)")
    bottom.legend(fontsize=7)
    _save(fig, path, dpi=110)


def save_quality_vs_cost(rows, path: str | Path, group: str = "steps", series: str = "label") -> None:
    """PSNR and FD vs uncached against realised cost, one panel pair per ``group`` value, one
    line per ``series`` (method); the upper left of the PSNR panel is where a cache wants to be."""
    plt = _pyplot()

    groups = sorted({r[group] for r in rows})
    fig, axes = plt.subplots(2, len(groups), figsize=(6.5 * len(groups), 8), squeeze=False, sharex=True)
    names = list(dict.fromkeys(r[series] for r in rows if r.get("psnr_vs_uncached") is not None))
    markers = "osD^v<>ph*"
    for col, value in enumerate(groups):
        top, bottom = axes[0, col], axes[1, col]
        for i, name in enumerate(names):
            points = sorted((r["cost"], r["psnr_vs_uncached"], r["fd_vs_uncached"]) for r in rows
                            if r[group] == value and r[series] == name)
            if not points:
                continue
            cost, psnr, fd = zip(*points)
            style = dict(marker=markers[i % len(markers)], label=name, lw=2.5 if "gocopt" in name else 1)
            top.plot(cost, psnr, **style)
            bottom.plot(cost, [max(f, 1e-6) for f in fd], **style)
        top.set_title(f"{group} = {value}")
        top.set_ylabel("PSNR vs uncached (dB, higher is better)")
        bottom.set_ylabel("FD vs uncached (lower is better)")
        bottom.set_yscale("log")
        bottom.set_xlabel("realised cost (fraction of site FLOPs)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    legend = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(legend.values()), list(legend), fontsize=7, ncol=2, loc="upper center",
               bbox_to_anchor=(0.5, 0.0))  # below the panels, not over the lines
    _save(fig, path, dpi=110)
