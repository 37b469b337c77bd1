"""Every plot ganlode draws, as PNG bytes: one headless backend, one way to a PNG.

matplotlib is imported on first use (:func:`pyplot`), with the ``Agg`` backend: plots are
files, never windows, and importing ganlode costs no matplotlib start-up.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend (the one place ganlode selects it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig, **savefig: Any) -> bytes:
    """The figure as PNG bytes (110 dpi unless ``savefig`` says otherwise); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **{"dpi": 110, **savefig})
    pyplot().close(fig)
    return buf.getvalue()


def curves_png(metrics: list[dict], names: tuple[str, ...] = ("fid", "kmmd")) -> bytes | None:
    """Each metric of ``names`` over steps, a line per method (mean over seeds); None with one point each."""
    series: dict[str, dict[str, dict[int, list[float]]]] = {}
    for r in metrics:
        if r["metric"] in names:
            series.setdefault(r["metric"], {}).setdefault(r["method"], {}).setdefault(int(r["step"]), []).append(float(r["value"]))
    if not any(len(pts) > 1 for d in series.values() for pts in d.values()):
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.6))
    for ax, name in zip(axes, names):
        for method, pts in sorted(series.get(name, {}).items()):
            steps = sorted(pts)
            ax.plot(steps, [sum(pts[s]) / len(pts[s]) for s in steps], marker="o", ms=3, label=method)
        ax.set_title(f"{name.upper()} over steps (lower is better)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return png(fig, bbox_inches="tight")


def shares_png(shares: list[dict], true_shares: dict[str, float] | None) -> bytes | None:
    """Rows of (step, source, share) as a line per source; dashed lines at the true shares."""
    if not shares:
        return None
    by_source: dict[str, list[tuple[int, float]]] = {}
    for r in shares:
        by_source.setdefault(str(r["source"]), []).append((int(r["step"]), float(r["share"])))
    fig, ax = pyplot().subplots(figsize=(7, 3.6))
    for source, pts in sorted(by_source.items()):
        pts.sort()
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{source}")
        if true_shares and source in true_shares:
            ax.axhline(true_shares[source], color=line.get_color(), ls="--", lw=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("mining step")
    ax.set_ylabel("selector share p_i")
    ax.set_title("Selector shares over time (dashed: true shares)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig, bbox_inches="tight")


def mining_shares_png(history: Sequence[dict[str, Any]], sources: Sequence[str],
                      true: Sequence[float] | None = None) -> bytes | None:
    """The selector's shares over a mining run's logged steps (dashed: the true shares, when known)."""
    rows = [{"step": r["step"], "source": sources[i], "share": p} for r in history for i, p in enumerate(r["shares"])]
    return shares_png(rows, dict(zip(sources, true)) if true is not None else None)


def search_png(rows: list[dict[str, Any]], params: Sequence[Any], metric: str, mode: str, title: str,
               best: int | None) -> bytes:
    """A search's metric against each searched setting (one panel each; log axes for log-uniform ones).

    ``params`` are the search space's :class:`~ganlode.orchestrator.search.space.Param` records.
    """
    plt = pyplot()
    import matplotlib.ticker
    colours = {"done": "tab:blue", "stopped": "tab:gray"}
    labels = {"done": "full budget", "stopped": "stopped early (ASHA)"}
    fig, axes = plt.subplots(1, len(params), figsize=(3.6 * len(params), 3.2), squeeze=False)
    for ax, p in zip(axes[0], params):
        for status, colour in colours.items():
            pts = [(r[p.name], r[metric]) for r in rows
                   if r["status"] == status and r[metric] is not None and math.isfinite(r[metric])]
            if pts:
                xs = [_position(x, p) for x, _ in pts]
                ax.scatter(xs, [y for _, y in pts], s=22, c=colour, label=labels[status], alpha=0.8)
        if best is not None:
            ax.scatter([_position(rows[best][p.name], p)], [rows[best][metric]], s=140, marker="*",
                       c="tab:orange", edgecolors="black", label="best", zorder=3)
        # the whole searched range, so the plot shows where in the space the trials landed
        if p.log_scale:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlim(p.args[0] / 1.3, p.args[1] * 1.3)
        elif p.kind == "randint":
            ax.set_xlim(p.args[0] - 0.5, p.args[1] + 0.5)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        elif p.kind == "uniform":
            pad = (p.args[1] - p.args[0]) * 0.05
            ax.set_xlim(p.args[0] - pad, p.args[1] + pad)
        else:
            ax.set_xticks(range(len(p.args)), [str(a) for a in p.args])
        ax.set_xlabel(p.name)
        ax.set_ylabel(f"{metric} ({mode})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png(fig)


def _position(value: Any, p: Any) -> Any:
    return list(p.args).index(value) if p.kind == "choice" else value
