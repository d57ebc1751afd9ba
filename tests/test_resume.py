"""Checkpoints that survive a kill: `llamagym run` killed with SIGKILL in the middle of an update and in the
middle of writing a checkpoint, or stopped with SIGINT/SIGTERM, then `--resume`d: no corrupt checkpoint, counters
that continue, and metrics/episode files with no row duplicated or lost."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from llamagym import hookimpl
from llamagym.run.rundir import STAGING_PREFIX, latest_checkpoint, list_checkpoints
from llamagym.cli import cli

SCRIPT = Path(__file__).with_name("llamagym_with_faults.py")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def run_args(model_dir, out, episodes=8, num_envs=1, every=2):
    return ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", model_dir, "--episodes", episodes,
            "--num-envs", num_envs, "--batch-size", 2, "--mini-batch-size", 2, "--ppo-epochs", 1,
            "--max-new-tokens", 3, "--lora-r", 2, "--checkpoint-every", every, "-o", out, "-q"]


def start_paused(args, pause, tmp_path):
    """Start `llamagym run` in a subprocess and return once it is paused at `pause` (POINT:N)."""
    paused, release = tmp_path / "paused", tmp_path / "release"
    env = {**os.environ, "LLAMAGYM_TEST_PAUSE": pause, "LLAMAGYM_TEST_PAUSED": str(paused),
           "LLAMAGYM_TEST_RELEASE": str(release)}
    process = subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not paused.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run ended (rc {process.returncode}) before pausing at {pause}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"the run never reached {pause}"
        time.sleep(0.05)
    return process, release


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


def rows(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]  # every line must parse: no half-written row survives


def without_times(row):
    return {k: v for k, v in row.items() if not k.startswith("time")}


def assert_checkpoints_sound(run_dir):
    """Every checkpoint directory is complete and loads; nothing half-written is left; `latest` names one."""
    root = run_dir / "checkpoints"
    names = sorted(p.name for p in root.iterdir() if p.name != "latest")
    assert names and all(n.startswith("update-") for n in names), names
    assert not list(root.glob(f"{STAGING_PREFIX}*")) and not list(run_dir.glob(".*-*"))
    for path in list_checkpoints(run_dir):
        state = json.loads((path / "state.json").read_text())
        trainer_state = torch.load(path / "trainer.pt", weights_only=False)
        assert trainer_state["trainer"]["updates"] <= state["updates"]
        adapter = load_file(str(path / "adapter_model.safetensors"))
        assert adapter and all(torch.isfinite(t).all() for t in adapter.values())
        assert load_file(str(path / "value_head.safetensors"))
    assert len(list_checkpoints(run_dir)) == len(names)
    assert (root / (root / "latest").read_text().strip()).is_dir()


def assert_rows_continue(run_dir, episodes, updates):
    metrics, played = rows(run_dir / "metrics.jsonl"), rows(run_dir / "episodes.jsonl")
    assert [r["update"] for r in metrics] == list(range(1, updates + 1))
    indices = [r["episode"] for r in played]
    assert len(indices) == len(set(indices)) == episodes
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["episodes"], summary["updates"]) == (episodes, updates)
    state = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())
    assert (state["episodes"], state["updates"], state["metrics_rows"], state["episode_rows"]) == (
        episodes, updates, updates, episodes)


def test_sigkill_during_an_update_then_resume_matches_an_uninterrupted_run(tiny_model_dir, tmp_path):
    reference = tmp_path / "reference"
    assert invoke(*run_args(tiny_model_dir, reference)).exit_code == 0

    killed = tmp_path / "killed"
    process, _ = start_paused(run_args(tiny_model_dir, killed), "update:4", tmp_path)
    kill(process)  # in update 4: updates 1-3 are logged, the checkpoint holds update 2
    assert [p.name.split("-ep-")[0] for p in list_checkpoints(killed)] == ["update-000002"]
    assert len(rows(killed / "metrics.jsonl")) == 3

    resumed = invoke("run", "--resume", killed, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert_checkpoints_sound(killed)
    assert_rows_continue(killed, episodes=8, updates=4)
    # one environment copy leaves no episode in flight at a checkpoint: the resumed run is the same run
    for name in ("metrics.jsonl", "episodes.jsonl"):
        assert [without_times(r) for r in rows(killed / name)] == [without_times(r) for r in rows(reference / name)]
    final = load_file(str(killed / "adapter" / "adapter_model.safetensors"))
    expected = load_file(str(reference / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_sigkill_while_writing_a_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    process, _ = start_paused(run_args(tiny_model_dir, out, episodes=10, num_envs=3), "checkpoint-write:2", tmp_path)
    kill(process)  # the checkpoint of update 4 is half-written in its staging directory
    assert list((out / "checkpoints").glob(f"{STAGING_PREFIX}*"))
    assert [json.loads((p / "state.json").read_text())["updates"] for p in list_checkpoints(out)] == [2]

    resumed = invoke("run", "--resume", out, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert_checkpoints_sound(out)
    assert_rows_continue(out, episodes=10, updates=json.loads((out / "summary.json").read_text())["updates"])


class Crash(BaseException):
    """Stands in for a kill: nothing after it runs in the code that raised it."""


def test_a_crash_between_publishing_a_checkpoint_and_moving_latest(tiny_model_dir, tmp_path, monkeypatch):
    from llamagym.run import checkpoint

    point_latest, calls = checkpoint._point_latest, []

    def crash_on_second(root, name):
        calls.append(name)
        if len(calls) == 2:
            raise Crash
        point_latest(root, name)

    monkeypatch.setattr(checkpoint, "_point_latest", crash_on_second)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        invoke(*run_args(tiny_model_dir, out, episodes=10, num_envs=3))
    monkeypatch.undo()
    assert (out / "checkpoints" / "latest").read_text().startswith("update-000002")
    assert latest_checkpoint(out).name.startswith("update-000004")  # found by name, not by the stale pointer

    resumed = invoke("run", "--resume", out, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert rows(out / "metrics.jsonl")[4]["update"] == 5  # went on from update 4
    assert_checkpoints_sound(out)
    assert_rows_continue(out, episodes=10, updates=json.loads((out / "summary.json").read_text())["updates"])


def _signal_plugin(signals_at_update):
    """A plugin that sends this process signals once the agent has made a given number of updates."""
    sent = set()

    @hookimpl
    def llamagym_shape_reward(agent):
        for updates, signum in signals_at_update:
            if agent.trainer.updates >= updates and (updates, signum) not in sent:
                sent.add((updates, signum))
                os.kill(os.getpid(), signum)

    import types

    module = types.ModuleType("signals")
    module.llamagym_shape_reward = llamagym_shape_reward
    return module


def test_ctrl_c_checkpoints_and_exits_130_then_resumes(tiny_model_dir, tmp_path, with_plugins):
    with_plugins(_signal_plugin([(3, signal.SIGINT)]))
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, episodes=40, num_envs=2, every=10))
    assert result.exit_code == 130, result.output
    assert "stopped by SIGINT" in result.output and f"llamagym run --resume {out}" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGINT" and summary["updates"] in (3, 4) and summary["episodes"] < 40
    assert json.loads((latest_checkpoint(out) / "state.json").read_text())["updates"] == summary["updates"]
    # the logs hold exactly what the checkpoint and the summary count
    assert len(rows(out / "metrics.jsonl")) == summary["updates"]
    assert len(rows(out / "episodes.jsonl")) == summary["episodes"] == 2 * summary["updates"]

    resumed = invoke("run", "--resume", out, "-q", "--episodes", 12)
    assert resumed.exit_code == 0, resumed.output
    assert_checkpoints_sound(out)
    assert_rows_continue(out, episodes=12, updates=6)


def test_sigterm_stops_cleanly_with_143(tiny_model_dir, tmp_path, with_plugins):
    with_plugins(_signal_plugin([(2, signal.SIGTERM)]))
    handler_before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, episodes=40, num_envs=2, every=100))
    assert result.exit_code == 143, result.output
    assert "stopped by SIGTERM" in result.output
    state = json.loads((latest_checkpoint(out) / "state.json").read_text())
    assert 2 <= state["updates"] < 20 and len(rows(out / "metrics.jsonl")) >= state["updates"]
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the run's handlers are gone


def test_max_minutes_stops_right_after_an_update_then_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    # a limit reached at once: the run still plays until its first commit, the end of the first update
    result = invoke(*run_args(tiny_model_dir, out, episodes=8), "--max-minutes", 1e-6)
    assert result.exit_code == 0, result.output
    assert "stopped at the time limit, max_minutes = 1e-06, after 2 of 8 episodes" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["time_limit_reached"] and summary["interrupted"] is None
    assert (out / "adapter").is_dir()
    assert_rows_continue(out, episodes=2, updates=1)  # no episode played was thrown away

    before = (out / "metrics.jsonl").read_bytes()
    again = invoke("run", "--resume", out, "-q")  # the same limit: already spent, nothing loaded or changed
    assert again.exit_code == 0 and "has already trained" in again.output and "--max-minutes" in again.output
    assert (out / "metrics.jsonl").read_bytes() == before
    longer = invoke("run", "--resume", out, "-q", "--max-minutes", 0)
    assert longer.exit_code == 0, longer.output
    assert_rows_continue(out, episodes=8, updates=4)
    assert not json.loads((out / "summary.json").read_text())["time_limit_reached"]


def test_the_time_limit_is_checked_only_where_the_run_commits():
    from llamagym.run.interrupts import StopRequest

    clock = [0.0]
    stop = StopRequest()
    stop.set_time_limit(60.0, lambda: clock[0])
    clock[0] = 59.0
    stop.committed()
    assert not stop.requested
    clock[0] = 61.0
    assert not stop.requested  # past the limit, but between commits: the run goes on to the next update
    stop.committed()
    assert stop.requested and stop.timed_out and stop.signal is None and stop.exit_code == 0


def test_every_process_stops_when_one_reaches_the_time_limit():
    from llamagym.distributed.replicas import Replicas
    from llamagym.run.interrupts import StopRequest

    class Gathered:
        world_size, rank = 2, 0

        def gather(self, value):
            return [value, (None, True, None)]  # the other process is past its limit

    stop = StopRequest()
    assert Replicas(Gathered()).agree(stop, None) == (True, None)
    assert stop.timed_out and stop.signal is None


def test_a_stop_file_written_during_the_agreement_counts_at_the_next_one(tmp_path):
    """The launcher writes the stop file whenever Ctrl-C comes. A process whose gather saw no signal anywhere
    must answer "go on" like the others, even if the file is there by the time it answers: one process stopping
    while another goes on to the next update's collectives hangs both."""
    from llamagym.distributed.replicas import Replicas
    from llamagym.run.interrupts import StopRequest

    stop_file = tmp_path / "stop"

    class Gathered:
        world_size, rank = 2, 0

        def gather(self, value):
            stop_file.write_text(str(int(signal.SIGINT)))  # Ctrl-C while the processes exchange what they saw
            return [value, (None, False, None)]

    stop = StopRequest(stop_file)
    assert Replicas(Gathered()).agree(stop, None) == (False, None)
    assert Replicas(Gathered()).agree(stop, None) == (True, None)  # everyone sees it at the next agreement
    assert stop.signal == signal.SIGINT


def test_a_second_ctrl_c_stops_at_once_keeping_the_previous_checkpoint(tiny_model_dir, tmp_path, with_plugins):
    with_plugins(_signal_plugin([(3, signal.SIGINT), (3, signal.SIGTERM)]))
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, episodes=40, num_envs=2, every=1))
    assert result.exit_code == 143, result.output  # the second signal decides the exit code
    assert "without a final checkpoint" in result.output.strip().splitlines()[-1]
    assert not (out / "summary.json").exists()
    assert json.loads((latest_checkpoint(out) / "state.json").read_text())["updates"] == 3
    assert invoke("run", "--resume", out, "-q", "--episodes", 12).exit_code == 0
    assert_rows_continue(out, episodes=12, updates=json.loads((out / "summary.json").read_text())["updates"])


def test_existing_run_directories_are_never_overwritten_silently(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert invoke(*run_args(tiny_model_dir, out, episodes=4)).exit_code == 0
    before = (out / "metrics.jsonl").read_bytes()
    again = invoke(*run_args(tiny_model_dir, out, episodes=4))
    assert again.exit_code == 2 and "--resume" in again.output and "--overwrite" in again.output
    assert (out / "metrics.jsonl").read_bytes() == before
    replaced = invoke(*run_args(tiny_model_dir, out, episodes=2), "--overwrite")
    assert replaced.exit_code == 0 and len(rows(out / "episodes.jsonl")) == 2
    both = invoke("run", "--resume", out, "--overwrite", "-q")
    assert both.exit_code == 2 and "only one of them" in both.output


def test_resume_of_a_finished_run_extends_it_and_may_change_settings(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert invoke(*run_args(tiny_model_dir, out, episodes=4), "--lr-schedule", "linear").exit_code == 0
    more = invoke("run", "--resume", out, "--episodes", 8, "--learning-rate", 3e-5, "-q")
    assert more.exit_code == 0, more.output
    assert_rows_continue(out, episodes=8, updates=4)
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["ppo"]["learning_rate"] == 3e-5 and record["config"]["episodes"] == 8
    assert record["changes"] == [{"update": 2, "episode": 4, "settings": {
        "episodes": [4, 8], "ppo.learning_rate": [4e-4, 3e-5]}}]  # 4e-4 from the blackjack preset
    # the run anneals linearly: the resumed updates 3 and 4 of the now 4 planned take the new rate's 2/4 and 1/4
    assert [r["ppo/learning_rate"] for r in rows(out / "metrics.jsonl")[2:]] == pytest.approx([1.5e-5, 7.5e-6])
    trainer_state = torch.load(latest_checkpoint(out) / "trainer.pt", weights_only=False)
    assert all(g["lr"] == pytest.approx(7.5e-6) for g in trainer_state["trainer"]["optimizer"]["param_groups"])
    refused = invoke("run", "--resume", out, "--lora-r", 4, "-q")
    assert refused.exit_code == 2 and "cannot change lora.r" in refused.output


def test_a_run_directory_in_use_is_refused(tiny_model_dir, tmp_path):
    from llamagym.run.rundir import _locked

    out = tmp_path / "run"
    assert invoke(*run_args(tiny_model_dir, out, episodes=2)).exit_code == 0
    with _locked(out):
        busy = invoke("run", "--resume", out, "--episodes", 4, "-q")
    assert busy.exit_code == 2 and "in use by another llamagym process" in busy.output
    assert len(rows(out / "episodes.jsonl")) == 2


def test_latest_checkpoint_ignores_incomplete_directories(tmp_path):
    root = tmp_path / "checkpoints"
    for name, files in [("update-000001-ep-000000002", ["state.json", "trainer.pt", "adapter_model.safetensors"]),
                        ("update-000002-ep-000000004", ["trainer.pt", "adapter_model.safetensors"]),
                        (".staging-x", ["state.json", "trainer.pt", "adapter_model.safetensors"])]:
        (root / name).mkdir(parents=True)
        for file in files:
            (root / name / file).write_text("x")
    assert latest_checkpoint(tmp_path).name == "update-000001-ep-000000002"


def game_args(model_dir, out, episodes, *flags):
    """A tic-tac-toe run on one table (so no game is in flight at a checkpoint), checkpointing every update."""
    return ["run", "--agent", "tictactoe", "--env", "tictactoe_v3", "--model", model_dir, "--episodes", episodes,
            "--num-envs", 1, "--mini-batch-size", 1, "--ppo-epochs", 1, "--max-new-tokens", 2, "--lora-r", 2,
            "--learning-rate", 0.01, "--checkpoint-every", 1, "--seed", 5, *flags, "-o", out, "-q"]


def adapter_files(run_dir):
    """Every saved adapter of a run (the main one and, with one policy per seat, `adapter/<seat>/`)."""
    found = {}
    for file in sorted((run_dir / "adapter").rglob("adapter_model.safetensors")):
        found[str(file.parent.relative_to(run_dir))] = load_file(str(file))
    return found


@pytest.mark.parametrize("flags", [
    ("--play", "separate", "--batch-size", 2),  # the second seat's adapter, value head and optimiser
    ("--play", "selfplay", "--batch-size", 1, "--pool-size", 2, "--pool-rate", 1.0, "--snapshot-every", 1),  # pool
], ids=["separate", "selfplay-pool"])
def test_a_resumed_game_run_is_the_uninterrupted_run(tiny_model_dir, tmp_path, flags):
    reference, split = tmp_path / "reference", tmp_path / "split"
    assert invoke(*game_args(tiny_model_dir, reference, 8, *flags)).exit_code == 0
    assert invoke(*game_args(tiny_model_dir, split, 4, *flags)).exit_code == 0
    assert (latest_checkpoint(split) / "engine.pt").is_file()
    resumed = invoke("run", "--resume", split, "--episodes", 8, "-q")
    assert resumed.exit_code == 0, resumed.output
    for name in ("metrics.jsonl", "episodes.jsonl"):
        assert [without_times(r) for r in rows(split / name)] == [without_times(r) for r in rows(reference / name)]
    final, expected = adapter_files(split), adapter_files(reference)
    assert sorted(final) == sorted(expected) and len(expected) == (2 if "separate" in flags else 1)
    for directory, weights in expected.items():
        assert all(torch.equal(final[directory][k], weights[k]) for k in weights), directory


@pytest.mark.slow
def test_sigkill_and_resume_with_the_default_model(tmp_path):
    """The same guarantees on the real default model (SmolLM2-135M-Instruct), killed in its third update."""
    out = tmp_path / "run"
    args = ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--episodes", 32, "--num-envs", 8,
            "--batch-size", 8, "--mini-batch-size", 8, "--ppo-epochs", 1, "--checkpoint-every", 2, "-o", out, "-q"]
    process, _ = start_paused(args, "update:3", tmp_path)
    kill(process)
    assert [json.loads((p / "state.json").read_text())["updates"] for p in list_checkpoints(out)] == [2]
    resumed = invoke("run", "--resume", out, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert_checkpoints_sound(out)
    assert_rows_continue(out, episodes=32, updates=json.loads((out / "summary.json").read_text())["updates"])


def test_resume_refuses_a_directory_with_an_adapter_but_no_checkpoint(tiny_model_dir, tmp_path):
    """An `llamagym sft` output has a config and an adapter but no checkpoint: resuming it would start from fresh
    weights and replace that adapter, so it is refused in one line and nothing changes."""
    out = tmp_path / "run"
    assert invoke(*run_args(tiny_model_dir, out, episodes=4)).exit_code == 0
    import shutil

    shutil.rmtree(out / "checkpoints")  # what an sft output looks like: config.json, adapter/, summary.json
    before = {p.name: p.stat().st_mtime_ns for p in (out / "adapter").iterdir()}
    result = invoke("run", "--resume", out, "--episodes", 8, "-q")
    assert result.exit_code == 2, result.output
    assert "holds an adapter but no checkpoint" in result.output and "--init-adapter" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in (out / "adapter").iterdir()} == before


def test_a_run_with_a_null_return_among_its_last_episodes_resumes(tiny_model_dir, tmp_path):
    """A NaN return is written to episodes.jsonl as null; resuming must not choke on it."""
    out = tmp_path / "run"
    assert invoke(*run_args(tiny_model_dir, out, episodes=4)).exit_code == 0
    path = out / "episodes.jsonl"
    played = rows(path)
    played[1]["return"] = None
    path.write_text("".join(json.dumps(r) + "\n" for r in played))
    resumed = invoke("run", "--resume", out, "--episodes", 8, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "summary.json").read_text())["episodes"] == 8
