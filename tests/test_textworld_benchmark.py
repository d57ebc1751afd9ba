"""benchmarks/textworld_learning.py at tiny scale: its intervals against known values, and every arm's steps (the
untrained evaluation, the walkthrough warm start, PPO within a time budget, the trained evaluation) end to end on
the tiny model, with the JSON and PNGs it writes."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("llamagym_textworld")
pytest.importorskip("textworld")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import textworld_learning as bench  # noqa: E402

from llamagym.tools.evaluation import wilson_interval  # noqa: E402


@pytest.mark.parametrize("successes, n, expected", [
    (5, 10, (0.2366, 0.7634)),  # the textbook case
    (0, 10, (0.0, 0.2775)),  # z² / (n + z²) above zero successes
    (10, 10, (0.7225, 1.0)),
    (1, 8, (0.0224, 0.4709)),
    (81, 100, (0.7222, 0.8749)),
])
def test_the_wilson_interval_matches_known_values(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected[0], abs=1e-4) and high == pytest.approx(expected[1], abs=1e-4)


@pytest.mark.parametrize("df, expected, tolerance", [
    (1, 12.7062, 1e-4), (2, 4.3027, 1e-4), (3, 3.1824, 5e-3), (5, 2.5706, 1e-3), (9, 2.2622, 1e-4),
    (29, 2.0452, 1e-4), (99, 1.9842, 1e-4),
])
def test_the_t_quantile_matches_the_table(df, expected, tolerance):
    assert bench.t_quantile(0.975, df) == pytest.approx(expected, abs=tolerance)


def test_the_mean_steps_interval():
    mean, low, high = bench.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)
    assert mean == 3.0 and low == pytest.approx(3 - half, abs=1e-3) and high == pytest.approx(3 + half, abs=1e-3)
    assert bench.mean_interval([7.0]) == (7.0, 7.0, 7.0) and math.isnan(bench.mean_interval([])[0])


def test_flatness_compares_late_turns_with_early_ones():
    rows = [{"turn": t, "prompt_tokens": 100.0 + (t > 10) * 20, "seconds": 0.5} for t in range(1, 51)]
    f = bench.flatness(rows)
    assert f["late_turns"] == [41, 50] and f["prompt_tokens_ratio"] == pytest.approx(1.2)
    assert f["seconds_ratio"] == pytest.approx(1.0)


def test_the_sft_ppo_arm_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "tw.json"
    report = bench.main(["--arm", "sft-ppo", "--model", str(tiny_model_dir), "--env",
                         "TextWorld-coin_collector-L1-s0", "--episodes", "2", "--eval-episodes", "2",
                         "--minutes", "5", "--sft-epochs", "1", "--sft-batch-size", "2", "--skip-sft-eval",
                         "--set", "num_envs=2", "--set", "ppo.batch_size=2", "--set", "ppo.mini_batch_size=8",
                         "--set", "ppo.ppo_epochs=1", "--set", "generation.max_new_tokens=6", "--set", "lora.r=2",
                         "--set", "generation.max_history_turns=1", "--set", "env_kwargs.max_steps=6",
                         "--output", str(tmp_path / "work"), "--out", str(out), "--quiet"])
    written = json.loads(out.read_text())
    assert written["arm"] == "sft-ppo" and written["config"]["env"] == "TextWorld-coin_collector-L1-s0"
    assert [r["key"] for r in written["rows"]] == ["untrained", "trained"]
    for row in written["rows"]:
        assert row["episodes"] == 2 and len(row["seeds"]) == 2 and row["dropped"] == 0
        assert row["success_ci"] == list(wilson_interval(row["successes"], 2))
        assert row["steps_ci"][0] <= row["mean_steps"] <= row["steps_ci"][1] and row["mean_steps"] <= 6
        costs = written["turn_cost"][row["key"]]
        assert costs[0]["turn"] == 1 and costs[0]["samples"] == 2
        assert all(c["prompt_tokens"] > 0 and c["seconds"] > 0 for c in costs)
    assert written["rows"][0]["seeds"] == written["rows"][1]["seeds"]  # the same evaluation episodes
    walkthrough = written["sft"]["walkthrough"]  # the game's winning commands, as the agent answers
    assert walkthrough and all(a.startswith("command: ") for a in walkthrough) and "coin" in walkthrough[-1]
    assert written["sft"]["examples"] == len(walkthrough)
    assert written["learning_curve"] and 0 <= written["learning_curve"][0]["success_rate"] <= 1
    budget = written["budget"]
    assert budget["allowed_minutes"] == 5 and budget["training_minutes"] == pytest.approx(
        budget["warm_start_minutes"] + budget["ppo_minutes"]) and budget["stopped_by_budget"] is False
    assert written["peak_rss_gib"] > 0 and "torch" in written["machine"] and written["eval_episodes"] == 2
    assert "target" in written and report["rows"][-1]["policy"].startswith("SFT, then PPO")
    assert out.with_suffix(".png").is_file() and Path(written["run_plot"]).is_file()


def test_the_budget_is_the_runs_own_time_limit(tmp_path):
    """The budget becomes the run's max_minutes; the run's summary says whether it stopped there."""
    from llamagym.config import RunConfig

    seen = {}

    def trainer(config, run_dir, overwrite):
        seen["max_minutes"] = config.max_minutes
        return {"episodes": 1, "time_limit_reached": True}

    summary = bench.train_for(RunConfig(), tmp_path / "run", 0.5, trainer)
    assert seen["max_minutes"] == 0.5 and summary["stopped_by_budget"] and summary["budget_minutes"] == 0.5
