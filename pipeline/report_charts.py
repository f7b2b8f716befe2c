"""Charts of the class report, drawn by matplotlib (Agg backend) as PNG pictures.

Readable in greyscale and on a photocopy: levels told apart by grey levels and hatching,
not by colour; black text; numbers written on the bars. No pyplot: each chart is its own
`Figure`, so nothing global is touched. Imported only when a class report is built
(matplotlib takes a moment to load).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from statistics import median

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

_DPI = 200
_WIDTH_IN = 6.3  # 16 cm: the width of the picture in the report
# DejaVu Sans ships with matplotlib: the same letters on every machine
_HATCHES = ("xxx", "///", "", "", "..", "\\\\\\")


def _png(figure: Figure) -> bytes:
    """The figure as a greyscale PNG (no colour, no transparency, no timestamp: the same
    data always gives the same bytes)."""
    FigureCanvasAgg(figure)
    drawn = io.BytesIO()
    figure.savefig(drawn, format="png", dpi=_DPI, facecolor="white")
    drawn.seek(0)
    with Image.open(drawn) as image:
        grey = image.convert("L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG", optimize=True, dpi=(_DPI, _DPI))
    return buffer.getvalue()


def _greys(count: int) -> list[float]:
    """`count` grey levels from light (first) to dark (last), as 0-1 luminances."""
    if count == 1:
        return [0.5]
    return [0.95 - 0.8 * i / (count - 1) for i in range(count)]


def totals_chart(totals: Sequence[int], maximum: int) -> bytes:
    """Bar chart: how many students got each total (0 … `maximum`), median marked."""
    with matplotlib.rc_context({"font.size": 8.5, "font.family": "DejaVu Sans"}):
        figure = Figure(figsize=(_WIDTH_IN, 2.5), layout="constrained")
        ax = figure.add_subplot()
        values = list(range(maximum + 1))
        counts = [sum(1 for total in totals if total == value) for value in values]
        bars = ax.bar(values, counts, width=0.8, color="0.55", edgecolor="black", linewidth=0.6)
        for bar, count in zip(bars, counts, strict=True):
            if count:
                ax.annotate(
                    str(count),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"},
                    zorder=3,
                )  # fmt: skip
        middle = median(totals)
        ax.axvline(middle, color="black", linestyle="--", linewidth=1, zorder=1)
        shown = f"{middle:g}".replace(".", ",")
        ax.annotate(
            f"médiane : {shown}", (middle, 1), xycoords=("data", "axes fraction"),
            xytext=(4, -2), textcoords="offset points", ha="left", va="top",
        )  # fmt: skip
        ax.set_xlim(-0.7, maximum + 0.7)
        ax.set_ylim(0, max(counts) * 1.25 + 0.5)
        ax.set_xticks(values)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"Total de l’évaluation globale (sur {maximum})")
        ax.set_ylabel("Nombre de stagiaires")
        ax.spines[["top", "right"]].set_visible(False)
        return _png(figure)


def levels_chart(
    rows: Sequence[tuple[str, Sequence[int]]], levels: Sequence[tuple[str, str]]
) -> bytes:
    """Stacked horizontal bars: for each row (a section), the share of each level.

    `rows` holds (label, count per level in `levels` order); `levels` (code, label), in
    the grid's order. Each segment is a grey level with its own hatching, labelled with
    its percentage when wide enough; the number of answers ends each bar.
    """
    with matplotlib.rc_context(
        {"font.size": 8.5, "font.family": "DejaVu Sans", "hatch.linewidth": 0.6}
    ):
        height = 0.9 + 0.55 * len(rows)
        figure = Figure(figsize=(_WIDTH_IN, height), layout="constrained")
        ax = figure.add_subplot()
        labels = [textwrap.fill(label, 34) for label, _ in rows]
        positions = list(range(len(rows)))[::-1]  # the first section on top
        starts = [0.0] * len(rows)
        totals = [sum(counts) for _, counts in rows]
        for index, ((code, name), grey) in enumerate(zip(levels, _greys(len(levels)), strict=True)):
            shares = [
                100 * counts[index] / total if total else 0.0
                for (_, counts), total in zip(rows, totals, strict=True)
            ]
            bars = ax.barh(
                positions, shares, left=starts, height=0.62, color=str(grey),
                edgecolor="black", linewidth=0.6, hatch=_HATCHES[index % len(_HATCHES)],
                label=f"{code} = {name}",
            )  # fmt: skip
            for bar, share in zip(bars, shares, strict=True):
                if share >= 10:
                    ax.text(
                        bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2,
                        f"{share:.0f} %", ha="center", va="center",
                        color="white" if grey < 0.5 else "black",
                        bbox={"boxstyle": "square,pad=0.15", "facecolor": str(grey),
                              "edgecolor": "none"},
                    )  # fmt: skip
            starts = [start + share for start, share in zip(starts, shares, strict=True)]
        for position, total in zip(positions, totals, strict=True):
            ax.text(101.5, position, f"{total} rép.", va="center", ha="left")
        ax.set_yticks(positions, labels)
        ax.set_xlim(0, 100)
        ax.set_xlabel("Part des notes données par les tuteurs (%)")
        ax.spines[["top", "right"]].set_visible(False)
        figure.legend(
            loc="outside upper center", frameon=False,
            ncol=len(levels) if sum(len(f"{c}{n}") for c, n in levels) < 50 else 2,
            handlelength=2.2, handleheight=1.2,
        )  # fmt: skip
        return _png(figure)
