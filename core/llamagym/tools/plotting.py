"""`llamagym plot`: a PNG of how a run went (return, win rate, KL, invalid-action rate per PPO update)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llamagym.errors import UsageError
from llamagym.run.metrics import read_jsonl
from llamagym.run.rundir import CONFIG_FILE, METRICS_FILE, PLOT_FILE, check_writable

# (metrics key, panel title, fixed y range or None)
PANELS = (("env/return_mean", "return (mean per update batch)", None),
          ("env/win_rate", "win rate", (-0.02, 1.02)),
          ("ppo/kl", "KL to the reference model", None),
          ("env/invalid_rate", "invalid-action rate", (-0.02, 1.02)))


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to `window` values, same length as `values`."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(episodes trained so far, value) for every row that has a number under `key`."""
    xs: list[float] = []
    ys: list[float] = []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)):
            xs.append(float(row.get("episodes", row.get("update", len(xs) + 1))))
            ys.append(float(value))
    return xs, ys


def run_title(run_dir: Path) -> str:
    try:
        config = json.loads((run_dir / CONFIG_FILE).read_text())["config"]
        return f"{config.get('agent')} on {config.get('env')}  ({run_dir.name})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a damaged config.json: no title then
        return run_dir.name


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw the run's metrics into a PNG (default `RUN_DIR/training.png`) and return its path."""
    run_dir = Path(run_dir)
    output = Path(output) if output else run_dir / PLOT_FILE
    check_writable(output)  # before reading and drawing
    rows = read_jsonl(run_dir / METRICS_FILE)
    if not rows:
        raise UsageError(f"{str(run_dir)!r} has no PPO updates in {METRICS_FILE} yet: pass a llamagym run "
                         f"directory that has trained at least one batch")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("llamagym plot needs matplotlib: pip install 'llamagym[plot]'") from None
    figure = Figure(figsize=(11, 7), layout="constrained")
    figure.suptitle(run_title(run_dir))
    window = max(1, len(rows) // 10)
    for ax, (key, title, limits) in zip(figure.subplots(2, 2).flat, PANELS):
        xs, ys = series(rows, key)
        ax.set_title(title)
        ax.set_xlabel("episodes")
        ax.grid(alpha=0.3)
        if not ys:
            ax.text(0.5, 0.5, f"no {key} in {METRICS_FILE}", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.plot(xs, ys, color="tab:blue", alpha=0.35 if window > 1 else 1.0, marker="." if len(ys) < 50 else None,
                label="per update")
        if window > 1:
            ax.plot(xs, moving_average(ys, window), color="tab:blue", label=f"mean of last {window} updates")
        if limits:
            ax.set_ylim(*limits)
        ax.legend(loc="best", fontsize="small")
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    return output
