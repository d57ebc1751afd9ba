"""Metrics as JSON lines: one row per PPO update (`metrics.jsonl`) and one per episode (`episodes.jsonl`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from llamagym.errors import DamagedFileError
from llamagym.run.integrity import check_row

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
    """Every complete row of a JSON-lines file (a half-written last line is ignored); a line before it that is no
    JSON object is a DamagedFileError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if number == len(lines) and not line.strip():
            break
        try:
            rows.append(check_row(path, number, line))
        except DamagedFileError:
            if number == len(lines):  # the last line, cut short by a kill
                break
            raise
    return rows


def truncate_jsonl(path: str | Path, rows: int) -> None:
    """Keep the first `rows` complete rows (used on resume, so no row is duplicated or half-written)."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_bytes(b"".join(line + b"\n" for line in lines[:rows]))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written copy behind
