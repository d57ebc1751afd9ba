"""Shared helpers for the benchmarks: timing, peak memory, table printing, JSON output."""

from __future__ import annotations

import json
import platform
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

RESULTS = Path(__file__).parent / "results"


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    box = {"s": 0.0}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - start


def machine() -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        return str(value)

    cells = [[fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def write_json(name: str, payload: dict[str, Any], path: str | None = None) -> Path:
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``section.key=value`` strings into a nested config dict (values parsed as TOML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        parsed = tomllib.loads(f"v = {value}")["v"] if value else ""
        target = out
        *sections, name = key.split(".")
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = parsed
    return out
