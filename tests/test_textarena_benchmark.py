"""benchmarks/textarena_learning.py at tiny scale: the random reference on the env alone, and the whole benchmark
(random reference, untrained evaluation, PPO against the opponent within a time budget, trained evaluation) end
to end on the tiny model, with the JSON and PNG it writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("llamagym_textarena")
pytest.importorskip("textarena")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import textarena_learning as bench  # noqa: E402

from llamagym.tools.evaluation import wilson_interval  # noqa: E402


def test_the_random_reference_plays_every_game_from_both_seats():
    config = bench.game_config(bench.arguments(["--env", "TextArena-KuhnPoker-v0", "--seed", "3"]))
    row = bench.random_reference(config, 120)
    assert row["episodes"] == 120 and row["errors"] == 0
    assert row["win_rate"] + row["draw_rate"] + row["loss_rate"] == pytest.approx(1.0)
    assert 0.35 < row["win_rate"] < 0.72  # random against random: about half, whichever seat
    assert row == {**bench.random_reference(config, 120), "seconds": row["seconds"]}  # seeded: the same games


def test_the_benchmark_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "ta.json"
    report = bench.main(["--model", str(tiny_model_dir), "--env", "TextArena-KuhnPoker-v0", "--episodes", "4",
                         "--eval-games", "4", "--minutes", "5", "--set", "num_envs=2", "--set", "ppo.batch_size=2",
                         "--set", "ppo.mini_batch_size=8", "--set", "ppo.ppo_epochs=1",
                         "--set", "generation.max_new_tokens=6", "--set", "lora.r=2",
                         "--output", str(tmp_path / "work"), "--out", str(out), "--quiet"])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(report))
    assert [r["key"] for r in written["rows"]] == ["random", "untrained", "trained"]
    for row in written["rows"]:
        assert row["episodes"] == 4 and row["errors"] == 0
        assert row["win_ci"] == list(wilson_interval(round(row["win_rate"] * 4), 4))
    assert written["run"]["episodes"] == 4 and not written["budget"]["stopped_by_budget"]
    assert written["config"]["multiagent"]["play"] == "opponent"
    assert written["config"]["multiagent"]["opponent"] == "random-move"
    assert len(written["learning_curve"]) == written["run"]["updates"] >= 1
    assert written["target"]["met"] == (written["rows"][-1]["win_rate"] >= 0.8)
    assert out.with_suffix(".png").is_file() and written["peak_rss_gib"] > 0
