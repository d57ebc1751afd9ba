"""Data-parallel PPO on the CPU with the gloo backend: two processes train a tiny model; the adapters stay identical
on both after every update, the processes play different episodes, and each update is the one a single process
would make with the combined batch. Plus the launch plumbing: `--num-processes`, errors, devices."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from llamagym.cli import cli
from llamagym.errors import TrainingError, UsageError

WORKER = Path(__file__).with_name("dp_worker.py")


def _launch_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _failure(done: subprocess.CompletedProcess) -> str:
    """What the processes printed before the launcher's own failure summary, which alone says nothing useful."""
    before, _, summary = done.stderr.partition("torch.distributed.elastic")
    return before[-4000:] + "\n[launcher] " + summary[-1000:]


@pytest.fixture(scope="module")
def two_process_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dp")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(WORKER), str(out), str(tiny_model_dir)], env=_launch_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, _failure(done)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    return out, ranks


def _max_difference(left, right):
    return max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(left, right))


def test_adapters_are_identical_on_every_process_after_every_update(two_process_run):
    _, (rank0, rank1) = two_process_run
    assert len(rank0["updates"]) == len(rank1["updates"]) == 4  # 8 episodes each, batch_size 2
    assert _max_difference(rank0["initial"], rank1["initial"]) == 0.0
    for update0, update1 in zip(rank0["updates"], rank1["updates"]):
        assert all(torch.equal(a, b) for a, b in zip(update0["weights"], update1["weights"]))
        assert update0["stats"]["ppo/kl"] == update1["stats"]["ppo/kl"]
        assert update0["stats"]["ppo/epochs"] == update1["stats"]["ppo/epochs"]
    assert any(u["stats"]["ppo/epochs"] < 3 for u in rank0["updates"])  # the early stop fired somewhere
    assert _max_difference(rank0["updates"][-1]["weights"], rank0["initial"]) > 1e-2  # training moved them
    # process 1 held back episodes: uneven shares in update 2, none at all in update 3
    assert [(len(a["episodes"]), len(b["episodes"])) for a, b in zip(rank0["updates"], rank1["updates"])] == \
        [(2, 2), (2, 1), (2, 0), (2, 2)]


def test_processes_play_different_episodes_and_process_0_writes_everything(two_process_run):
    out, (rank0, rank1) = two_process_run
    run = out / "run"
    rows = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["episode"] for r in rows) == list(range(16))
    seeds = {p: {r["seed"] for r in rows if r["process"] == p} for p in (0, 1)}
    assert len(seeds[0]) == len(seeds[1]) == 8 and not seeds[0] & seeds[1]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["update"] for m in metrics] == [1, 2, 3, 4] and all(m["processes"] == 2 for m in metrics)
    samples = [sum(len(e.turns) for e in a["episodes"] + b["episodes"])
               for a, b in zip(rank0["updates"], rank1["updates"])]
    assert [m["ppo/samples"] for m in metrics] == samples  # statistics over both processes
    names = sorted(p.name for p in (run / "checkpoints").glob("update-*"))
    assert [name.split("-ep-")[0] for name in names] == ["update-000002", "update-000004"]
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert rank0["summary"] == rank1["summary"] and rank0["summary"]["episodes"] == 16


def _replay(ranks, combine, updates=4):
    """Train one process from the same start on `combine(update of process 0, update of process 1)`; return the
    largest weight difference to the data-parallel run after each of the first `updates` updates."""
    from llamagym.config import RunConfig, build
    from llamagym.policy.models import load_model
    from llamagym.algo.trainer import PPOTrainer

    config = build(RunConfig, ranks[0]["config"])
    policy, tokenizer = load_model(config.model, config.lora)
    with torch.no_grad():
        for param, start in zip(policy.trainable_parameters(), ranks[0]["initial"]):
            param.copy_(start)
    combined = dataclasses.replace(config.ppo, batch_size=2 * config.ppo.batch_size,
                                   mini_batch_size=2 * config.ppo.mini_batch_size)
    trainer = PPOTrainer(policy, combined, pad_token_id=tokenizer.pad_token_id,
                         temperature=config.generation.temperature, seed=config.seed)
    differences, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # a two-layer model gains nothing from threads, and they slow a busy machine down
    try:
        for update0, update1 in list(zip(ranks[0]["updates"], ranks[1]["updates"]))[:updates]:
            trainer.step(combine(update0["episodes"], update1["episodes"]))
            differences.append(_max_difference(policy.trainable_parameters(), update0["weights"]))
    finally:
        torch.set_num_threads(threads)
    return differences


def test_each_update_is_one_process_with_the_combined_batch(two_process_run):
    _, ranks = two_process_run
    assert max(_replay(ranks, lambda first, second: first + second)) < 1e-5
    # the check can fail: one process's episodes alone give another update
    assert _replay(ranks, lambda first, second: first, updates=1)[0] > 1e-3


def test_run_with_num_processes(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "llamagym", "run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model",
         str(tiny_model_dir), "--episodes", "8", "--num-envs", "2", "--batch-size", "2", "--mini-batch-size", "2",
         "--ppo-epochs", "1", "--max-new-tokens", "3", "--lora-r", "2", "--device", "cpu", "-o", str(out), "-q",
         "--num-processes", "2"], env=_launch_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, _failure(done)
    assert done.stdout.count("trained 8 episodes, 2 updates") == 1  # printed by process 0 only
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["episodes"] == 8
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["process"] for r in rows) == [0] * 4 + [1] * 4


def test_num_processes_checks_the_output_before_starting(tiny_model_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "file").write_text("x")
    result = CliRunner().invoke(cli, ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model",
                                      str(tiny_model_dir), "-o", str(out), "--num-processes", "2"])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith("Error:")
    assert "--overwrite" in result.output and "Traceback" not in result.output
    bad = CliRunner().invoke(cli, ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--num-processes", "0"])
    assert bad.exit_code == 2 and "--num-processes" in bad.output


def test_devices_and_launch_settings(monkeypatch):
    from llamagym.distributed.group import process_device
    from llamagym.distributed.environment import check_launch_settings, is_main_process, launched_world_size

    assert process_device("cpu", 3) == "cpu"
    assert process_device("auto", 1) == ("cuda:1" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="CUDA_VISIBLE_DEVICES"):
        process_device("cuda:1", 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert launched_world_size() == 1 and is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert launched_world_size() == 4 and not is_main_process()
    check_launch_settings()
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(UsageError, match="FSDP"):
        check_launch_settings()


class _Failure:
    def __init__(self, message):
        self.message, self.exitcode = {"message": message}, 1


class _ChildFailed:
    def __init__(self, message):
        self.failure = _Failure(message)

    def get_first_failure(self):
        return 1, self.failure


def test_a_failed_process_becomes_one_error_line():
    from llamagym.distributed.launch import _child_error

    usage = _child_error(_ChildFailed("ConfigError: lora.r must be at least 1, got 0"))
    assert isinstance(usage, UsageError) and str(usage) == "lora.r must be at least 1, got 0"
    training = _child_error(_ChildFailed("TrainingError: 3 updates in a row were skipped"))
    assert isinstance(training, TrainingError) and str(training) == "process 1: 3 updates in a row were skipped"
    crash = _child_error(_ChildFailed("RuntimeError: CUDA out of memory"))
    assert isinstance(crash, TrainingError) and "process 1 failed: RuntimeError: CUDA out of memory" in str(crash)


# ---- the reliability of a single-process run holds for two processes: kill -9 and resume, Ctrl-C, flags given
# with --resume, the run-directory lock ----------------------------------------------------------------------

def _two_process_args(model_dir, out, episodes=8, *flags):
    return [sys.executable, "-m", "llamagym", "run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model",
            str(model_dir), "--episodes", str(episodes), "--num-envs", "2", "--batch-size", "2",
            "--mini-batch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "3", "--lora-r", "2", "--device",
            "cpu", "--checkpoint-every", "2", "--no-preset", "-o", str(out), "-q", "--num-processes", "2",
            *map(str, flags)]


def _resume_two_processes(out, *flags):
    return [sys.executable, "-m", "llamagym", "run", "--resume", str(out), "-q", "--num-processes", "2",
            *map(str, flags)]


def _start_and_signal_after_a_checkpoint(args, signum):
    import signal as signals  # noqa: F401  (signum comes from it)
    import time

    process = subprocess.Popen(args, env=_launch_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its own process group, as a terminal's job
    out = Path(args[args.index("-o") + 1])
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "latest").is_file():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    os.killpg(process.pid, signum)  # every process of the run, as Ctrl-C in a terminal or a kill of the job
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def _assert_a_whole_run(out, episodes):
    from test_resume import assert_checkpoints_sound

    assert_checkpoints_sound(out)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    played = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["update"] for r in metrics] == list(range(1, summary["updates"] + 1))
    indices = [r["episode"] for r in played]
    assert len(indices) == len(set(indices)) == summary["episodes"] == episodes
    assert summary["processes"] == 2 and summary["interrupted"] is None


def test_two_processes_killed_with_sigkill_resume_and_finish(tiny_model_dir, tmp_path):
    import signal

    out = tmp_path / "run"
    code, _, _ = _start_and_signal_after_a_checkpoint(_two_process_args(tiny_model_dir, out, 400), signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    done = subprocess.run(_resume_two_processes(out, "--episodes", 16), env=_launch_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, _failure(done)
    _assert_a_whole_run(out, 16)


def test_ctrl_c_stops_two_processes_with_a_checkpoint_then_resumes(tiny_model_dir, tmp_path):
    import signal

    out = tmp_path / "run"
    code, stdout, stderr = _start_and_signal_after_a_checkpoint(_two_process_args(tiny_model_dir, out, 400),
                                                                signal.SIGINT)
    assert code == 130, stdout + stderr[-3000:]
    assert "stopped by SIGINT" in stdout and f"llamagym run --resume {out}" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGINT" and 0 < summary["episodes"] < 400
    state = json.loads((out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip() / "state.json")
                       .read_text())
    assert (state["updates"], state["episodes"]) == (summary["updates"], summary["episodes"])
    assert len((out / "metrics.jsonl").read_text().splitlines()) == summary["updates"]
    done = subprocess.run(_resume_two_processes(out, "--episodes", summary["episodes"] + 8), env=_launch_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, _failure(done)
    _assert_a_whole_run(out, summary["episodes"] + 8)


def test_flags_given_with_resume_change_a_two_process_run(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    first = subprocess.run(_two_process_args(tiny_model_dir, out, 8), env=_launch_env(), capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, _failure(first)
    done = subprocess.run(_resume_two_processes(out, "--episodes", 12, "--learning-rate", 0.02), env=_launch_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, _failure(done)
    _assert_a_whole_run(out, 12)
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["ppo"]["learning_rate"] == 0.02 and record["config"]["episodes"] == 12
    assert record["changes"][0]["settings"]["ppo.learning_rate"][1] == 0.02
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["ppo/learning_rate"] for r in metrics] == [pytest.approx(1e-4)] * 2 + [pytest.approx(0.02)]


def test_a_run_directory_in_use_is_refused_by_two_processes(tiny_model_dir, tmp_path):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with (out / ".lock").open("a+") as handle:  # another llamagym process holds the directory
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = subprocess.run(_two_process_args(tiny_model_dir, out, 8), env=_launch_env(), capture_output=True,
                              text=True, timeout=600)
    assert done.returncode == 2, _failure(done)
    assert "is in use by another llamagym process" in done.stderr and "Traceback" not in done.stderr
    assert list(out.iterdir()) == [out / ".lock"]


def test_an_environment_failing_in_one_process_stops_every_process_with_one_error(tiny_model_dir, tmp_path):
    """Process 1's environment fails every episode: its error budget runs out, and both processes stop after the
    same update with the same error and a checkpoint, instead of one waiting for the other forever."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(WORKER.with_name("dp_faults_worker.py")), str(tmp_path), str(tiny_model_dir)],
                          env=_launch_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, _failure(done)
    messages = [(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)]
    assert messages[0] == messages[1], messages
    assert "process 1: 3 environment errors in a row (limit 3" in messages[0]
    assert "its last good state is in" in messages[0]
    played = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert {r["process"] for r in played if r["error"]} == {1} and any(r["error"] is None for r in played)
