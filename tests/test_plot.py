"""`llamagym plot`: a readable PNG of return, win rate, KL and invalid-action rate; clear errors otherwise."""

import importlib.util
import json

import pytest
from click.testing import CliRunner

from llamagym.cli import cli
from llamagym.tools.plotting import PANELS, moving_average, series

pytestmark = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                reason="matplotlib is not installed (pip install 'llamagym[plot]')")


def fake_run(run_dir, updates=40):
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"config": {"agent": "blackjack", "env": "Blackjack-v1"}}))
    rows = [{"update": u, "episodes": 16 * u, "env/return_mean": -0.4 + 0.01 * u, "env/win_rate": 0.3 + 0.005 * u,
             "ppo/kl": 0.02 * u, "env/invalid_rate": max(0.0, 0.5 - 0.02 * u)} for u in range(1, updates + 1)]
    rows[len(rows) // 2]["ppo/kl"] = None  # a non-finite value written as null is skipped, not plotted as zero
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def test_series_and_moving_average():
    rows = [{"episodes": 4, "x": 1.0}, {"episodes": 8, "x": None}, {"episodes": 12, "x": 3.0}]
    assert series(rows, "x") == ([4.0, 12.0], [1.0, 3.0])
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_plot_writes_a_png_with_four_panels(tmp_path):
    from matplotlib.image import imread

    run_dir = fake_run(tmp_path / "run")
    result = CliRunner().invoke(cli, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert str(run_dir / "training.png") in result.output
    image = imread(run_dir / "training.png")
    assert image.shape[:2] == (700, 1100)
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert [p[0] for p in PANELS] == ["env/return_mean", "env/win_rate", "ppo/kl", "env/invalid_rate"]


def test_plot_to_a_chosen_file(tmp_path):
    run_dir = fake_run(tmp_path / "run", updates=3)
    result = CliRunner().invoke(cli, ["plot", str(run_dir), "-o", str(tmp_path / "out" / "curves.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_of_a_directory_without_updates_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("Error:") and "no PPO updates" in result.output
    assert len(result.output.strip().splitlines()) == 1
