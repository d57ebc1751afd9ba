"""`--report-to`: the JSONL record, TensorBoard event files, W&B offline runs and an MLflow file store, each read
back; unknown or missing trackers fail with one line before anything is written."""

import importlib.util
import json

import pytest
from click.testing import CliRunner

from llamagym.run import loggers
from llamagym.cli import cli
from llamagym.errors import UnknownNameError, UsageError

ROWS = [{"update": 1, "episodes": 4, "ppo/kl": 0.5, "env/return_mean": -1.0, "note": "text", "bad": float("nan")},
        {"update": 2, "episodes": 8, "ppo/kl": 0.25, "env/return_mean": 0.5, "note": "text", "bad": None}]
CONFIG = {"agent": "blackjack", "ppo": {"batch_size": 4, "kl_coef": 0.05}}


def log_rows(report_to, run_dir, rows=ROWS, resume_step=None):
    trackers = loggers.open_loggers(report_to, run_dir, CONFIG, resume_step)
    for row in rows:
        trackers.log(row, step=row["update"])
    trackers.close()


def needs(module):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{module} is not installed (pip install 'llamagym[{module}]')")


@pytest.mark.parametrize("report_to, names", [("jsonl", ["jsonl"]), ("none", ["jsonl"]), ("", ["jsonl"]),
                                              (" TensorBoard ,jsonl,tensorboard", ["jsonl", "tensorboard"])])
def test_tracker_names(report_to, names, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert loggers.tracker_names(report_to) == names


def test_an_unknown_tracker_is_named_with_the_choices():
    with pytest.raises(UnknownNameError) as info:
        loggers.tracker_names("jsonl,tensorbord")
    assert "unknown tracker 'tensorbord' (did you mean 'tensorboard'?)" in str(info.value)
    assert "jsonl, mlflow, none, tensorboard, wandb" in str(info.value) and "\n" not in str(info.value)


def test_a_missing_backend_says_which_extra_installs_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else object())
    with pytest.raises(UsageError, match=r"--report-to wandb needs the wandb package: pip install 'llamagym\[wandb\]'"):
        loggers.tracker_names("tensorboard,wandb")


def test_jsonl_is_always_written(tmp_path):
    log_rows("none", tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["ppo/kl"] for r in rows] == [0.5, 0.25] and rows[0]["bad"] is None and rows[0]["note"] == "text"


def test_only_finite_numbers_go_to_trackers():
    assert loggers.numeric(ROWS[0]) == {"update": 1.0, "episodes": 4.0, "ppo/kl": 0.5, "env/return_mean": -1.0}
    assert loggers.flatten(CONFIG) == {"agent": "blackjack", "ppo.batch_size": 4, "ppo.kl_coef": 0.05}


@needs("tensorboard")
def test_tensorboard_event_files_hold_the_scalars_and_resume_purges_redone_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_rows("tensorboard", tmp_path)
    # resumed from update 1's checkpoint: update 2 is redone, and its first attempt is purged
    log_rows("tensorboard", tmp_path, [{"update": 2, "ppo/kl": 0.125, "env/return_mean": 0.75}], resume_step=1)
    events = EventAccumulator(str(tmp_path / loggers.TENSORBOARD_DIR))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("env/return_mean")] == [(1, -1.0), (2, 0.75)]
    assert [(e.step, e.value) for e in events.Scalars("ppo/kl")] == [(1, 0.5), (2, 0.125)]
    assert "note" not in events.Tags()["scalars"] and "config" in str(events.Tags()["tensors"])


@needs("wandb")
def test_wandb_offline_run_records_the_metrics_and_keeps_its_id_on_resume(tmp_path, monkeypatch):
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    log_rows("wandb", tmp_path / "run")
    wandb.teardown()  # the service writes the offline file in the background; wait for it before reading
    run_id = (tmp_path / "run" / loggers.WANDB_ID_FILE).read_text()
    [record] = (tmp_path / "run" / "wandb").glob(f"offline-run-*/run-{run_id}.wandb")
    data = record.read_bytes()
    assert b"env/return_mean" in data and b"ppo/kl" in data and b"kl_coef" in data
    log_rows("wandb", tmp_path / "run", [{"update": 3, "ppo/kl": 0.1}], resume_step=2)
    wandb.teardown()
    assert (tmp_path / "run" / loggers.WANDB_ID_FILE).read_text() == run_id
    records = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert {r.name for r in records} == {f"run-{run_id}.wandb"}  # the resumed run logs under the same id


@needs("mlflow")
def test_mlflow_file_store_holds_metrics_params_and_one_run_across_resume(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    log_rows("mlflow", tmp_path / "run")
    log_rows("mlflow", tmp_path / "run", [{"update": 3, "ppo/kl": 0.1}], resume_step=2)
    client = MlflowClient()
    run = client.get_run((tmp_path / "run" / loggers.MLFLOW_ID_FILE).read_text())
    history = client.get_metric_history(run.info.run_id, "ppo/kl")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25), (3, 0.1)]
    assert run.data.params["ppo.batch_size"] == "4" and run.info.status == "FINISHED"
    assert run.info.run_name == "run" and client.get_experiment(run.info.experiment_id).name == "tests"
    assert len(client.search_runs([run.info.experiment_id])) == 1


@needs("mlflow")
def test_a_tracker_that_cannot_start_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    with pytest.raises(UsageError) as info:
        loggers.open_loggers("mlflow", tmp_path, CONFIG)
    message = str(info.value)
    assert message.startswith("--report-to mlflow could not start (") and "MLFLOW_TRACKING_URI" in message
    assert "--overwrite" in message and "\n" not in message


def tiny_run(model_dir, out, *extra):
    args = ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", model_dir, "--episodes", 8,
            "--num-envs", 4, "--batch-size", 4, "--mini-batch-size", 4, "--ppo-epochs", 1, "--max-new-tokens", 3,
            "--lora-r", 2, "-o", out, "-q", *extra]
    return CliRunner().invoke(cli, list(map(str, args)))


def test_run_rejects_an_unknown_tracker_before_writing_anything(tmp_path):
    result = tiny_run("/no/model/needed", tmp_path / "never", "--report-to", "jsonl,wandbb")
    assert result.exit_code == 2 and "unknown tracker 'wandbb' (did you mean 'wandb'?)" in result.output
    assert not (tmp_path / "never").exists()


@needs("tensorboard")
@needs("matplotlib")
def test_run_reports_to_tensorboard_and_plots(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = tiny_run(tiny_model_dir, out, "--report-to", "tensorboard")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["config"]["report_to"] == "tensorboard"
    events = EventAccumulator(str(out / loggers.TENSORBOARD_DIR))
    events.Reload()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("env/return_mean")] == [m["env/return_mean"] for m in metrics]
    assert [e.step for e in events.Scalars("ppo/kl")] == [1, 2]
    plotted = CliRunner().invoke(cli, ["plot", str(out)])
    assert plotted.exit_code == 0, plotted.output
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
