"""PNG plots of `lilm eval`: the training loss curve and the reply-length histogram.

Figures are drawn on matplotlib's `Figure` object with the Agg canvas directly (no pyplot):
no global figure state, no display needed. Labels are ASCII so no CJK font is required.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

TRAIN_LOG_FILE = "train_log.jsonl"
FIGURE_SIZE = (7.0, 4.0)  # inches
DPI = 110
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class LossPoint:
    """One report line of `lilm train`'s train_log.jsonl (losses may be missing)."""

    step: int
    train_loss: float | None
    val_loss: float | None


def read_train_log(path: str | Path) -> list[LossPoint]:
    """Loss points of a train_log.jsonl (or of `DIR/train_log.jsonl`), in file order.

    Raises ConfigError naming the line when a line is not a JSON object with a `step`.
    """
    path = Path(path)
    file = path / TRAIN_LOG_FILE if path.is_dir() else path
    points = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            points.append(LossPoint(step=int(row["step"]), train_loss=_finite(row.get("train_loss")), val_loss=_finite(row.get("val_loss"))))
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{file}:{number}: not a train_log line: {error}") from None
    return points


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def plot_loss_curve(points: Sequence[LossPoint], out_png: str | Path, *, title: str = "training loss") -> Path | None:
    """Train and validation loss against step. Returns the PNG path, or None when no point has a loss."""
    train = [(p.step, p.train_loss) for p in points if p.train_loss is not None]
    valid = [(p.step, p.val_loss) for p in points if p.val_loss is not None]
    if not train and not valid:
        return None
    figure, axes = _figure()
    if train:
        axes.plot(*zip(*train), label="train loss", color="tab:blue", linewidth=1.2)
    if valid:
        axes.plot(*zip(*valid), label="validation loss", color="tab:orange", marker="o", markersize=3)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats/token)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, out_png)


def plot_length_histogram(lengths: Mapping[str, Sequence[int]], out_png: str | Path, *, bins: int = HISTOGRAM_BINS) -> Path:
    """Overlaid histograms of reply lengths (characters), one series per label, shared bins."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure()
    longest = max((max(values) for values in lengths.values() if values), default=0)
    width = max(1, math.ceil((longest + 1) / bins))
    edges = [i * width for i in range(math.ceil((longest + 1) / width) + 1)]
    # One call with every series: bars of a bin stand side by side instead of hiding each other.
    axes.hist([list(v) for v in lengths.values()], bins=edges, label=[f"{k} (n={len(v)})" for k, v in lengths.items()],
              edgecolor="black", linewidth=0.4)
    axes.set_xlabel("reply length (characters)")
    axes.set_ylabel("replies")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title("reply lengths")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, out_png)


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="tight")
    return figure, figure.add_subplot()


def _save(figure, out_png: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure).print_png(str(out_png))
    return out_png
