"""Metrics as JSON lines: one row per PPO update (`metrics.jsonl`) and one per episode (`episodes.jsonl`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any



def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlWriter:
    """Appends rows to a JSON-lines file, flushed after each row so a killed run loses nothing written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self._handle.flush()

    def sync(self) -> None:
        """Flush the rows written so far to disk (before a checkpoint that counts them)."""
        if not self._handle.closed:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self.sync()
        self._handle.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every complete row of a JSON-lines file (a half-written last line is ignored)."""
    rows: list[dict[str, Any]] = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def truncate_jsonl(path: str | Path, rows: int) -> None:
    """Keep the first `rows` complete rows (used on resume, so no row is duplicated or half-written)."""
    path = Path(path)
    if not path.exists():
        return
    kept = path.read_text(encoding="utf-8").splitlines(keepends=True)[:rows]
    kept = [line if line.endswith("\n") else line + "\n" for line in kept]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
