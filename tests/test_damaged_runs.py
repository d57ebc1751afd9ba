"""Damaged run directories (issue 19): a resume verifies the newest checkpoint and falls back to the older one when
it is damaged, saying so in one logged line; only when no checkpoint is intact does it stop, with one line naming the
files. Damaged run files (config.json, metrics.jsonl, episodes.jsonl) and adapters are named, with the line, by
`run --resume`, `eval`, `plot` and `run --init-adapter`; nothing already written is lost."""

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamagym.cli import cli

RUN = ["--agent", "blackjack", "--env", "Blackjack-v1", "--num-envs", 1, "--batch-size", 2, "--mini-batch-size", 2,
       "--ppo-epochs", 1, "--max-new-tokens", 2, "--lora-r", 2, "--checkpoint-every", 2, "-q"]
NEWEST, OLDER = "update-000004-ep-000000008", "update-000002-ep-000000004"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    """A run of 8 episodes, 4 updates: checkpoints after updates 2 and 4."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = invoke("run", *RUN, "--model", tiny_model_dir, "--episodes", 8, "-o", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run_dir(finished_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target


def snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_one_line_error(result, *fragments, exit_code=1):
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    assert "Traceback" not in result.output


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def flip(path, at=-40):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def cut_state(path):
    path.write_text(path.read_text()[:30])


DAMAGE = {
    "truncated trainer state": ("trainer.pt", truncate),
    "truncated adapter": ("adapter_model.safetensors", lambda p: truncate(p, 0.9)),
    "adapter header cut short": ("adapter_model.safetensors", lambda p: truncate(p, 0.001)),
    "truncated value head": ("value_head.safetensors", truncate),
    "state JSON cut short": ("state.json", cut_state),
    "a flipped byte in the trainer state": ("trainer.pt", flip),
    "state.json deleted": ("state.json", Path.unlink),
}


def assert_resumed_to(run_dir, episodes, updates):
    metrics, played = rows(run_dir / "metrics.jsonl"), rows(run_dir / "episodes.jsonl")
    assert [r["update"] for r in metrics] == list(range(1, updates + 1))
    assert sorted(r["episode"] for r in played) == list(range(episodes))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["episodes"], summary["updates"]) == (episodes, updates)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(run_dir, damage, caplog):
    name, spoil = DAMAGE[damage]
    spoil(run_dir / "checkpoints" / NEWEST / name)
    with caplog.at_level(logging.WARNING, logger="llamagym"):
        result = invoke("run", "--resume", run_dir, "--episodes", 10, "-q")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    said = [r.getMessage() for r in caplog.records if "resuming from the older checkpoint" in r.getMessage()]
    assert len(said) == 1 and name in said[0] and OLDER in said[0], said
    assert "\n" not in said[0]
    # resumed at update 2 / episode 4: updates 3-5 and episodes 4-9 were played again, no row twice, none lost
    assert_resumed_to(run_dir, episodes=10, updates=5)
    assert (run_dir / "checkpoints" / f"damaged-{NEWEST}").is_dir()  # set aside, not deleted


def test_no_intact_checkpoint_stops_with_one_line_naming_the_files(run_dir):
    truncate(run_dir / "checkpoints" / NEWEST / "trainer.pt")
    cut_state(run_dir / "checkpoints" / OLDER / "state.json")
    before = snapshot(run_dir)
    result = invoke("run", "--resume", run_dir, "--episodes", 10, "-q")
    assert_one_line_error(result, "no checkpoint is intact", f"{NEWEST}/trainer.pt", f"{OLDER}/state.json",
                          "--init-adapter")
    assert snapshot(run_dir) == before


def test_an_intact_run_resumes_without_a_warning(run_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="llamagym"):
        result = invoke("run", "--resume", run_dir, "--episodes", 10, "-q")
    assert result.exit_code == 0, result.output
    assert not [r for r in caplog.records if "damaged" in r.getMessage() or "older" in r.getMessage()]
    assert_resumed_to(run_dir, episodes=10, updates=5)


@pytest.mark.parametrize("content, fragments", [
    (b"[1, 2]", ["config.json", "is not a llamagym run config", "JSON object"]),
    (b"7", ["config.json", "is not a llamagym run config"]),
    (b"\x00\xff\xfe binary", ["config.json", "not JSON"]),
    (b'{"config": {"episodes": "many"}}', ["config.json", "episodes must be an integer"]),
])
def test_a_damaged_config_json_is_named(run_dir, tmp_path, content, fragments):
    (run_dir / "config.json").write_bytes(content)
    before = snapshot(run_dir)
    assert_one_line_error(invoke("run", "--resume", run_dir, "-q"), *fragments, exit_code=2)
    assert_one_line_error(invoke("eval", "--checkpoint", run_dir, "--episodes", 1, "-q"), *fragments, exit_code=2)
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("name, line, content, fragment", [
    ("metrics.jsonl", 2, b"\x00\x9f\xff\xfe\n", "metrics.jsonl:2 is not a JSON row"),
    ("metrics.jsonl", 1, b"[1, 2]\n", "metrics.jsonl:1 holds a list, not a JSON object"),
    ("episodes.jsonl", 3, b"42\n", "episodes.jsonl:3 holds a int, not a JSON object"),
    ("episodes.jsonl", 5, b'"a row"\n', "episodes.jsonl:5 holds a str"),
])
def test_a_damaged_row_is_named_by_file_and_line(run_dir, name, line, content, fragment):
    path = run_dir / name
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = content
    path.write_bytes(b"".join(lines))
    before = snapshot(run_dir)
    assert_one_line_error(invoke("run", "--resume", run_dir, "--episodes", 10, "-q"), fragment)
    assert snapshot(run_dir) == before
    if name == "metrics.jsonl":
        assert_one_line_error(invoke("plot", run_dir, "-o", run_dir.parent / "p.png"), fragment)
        assert not (run_dir.parent / "p.png").exists()


def test_rows_missing_from_a_run_file_are_named(run_dir):
    path = run_dir / "metrics.jsonl"
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    before = snapshot(run_dir)
    assert_one_line_error(invoke("run", "--resume", run_dir, "--episodes", 10, "-q"),
                          "metrics.jsonl holds 2 rows, and checkpoint update-000004", "counts 4")
    assert snapshot(run_dir) == before


def test_a_half_written_last_row_is_still_tolerated(run_dir):
    with (run_dir / "metrics.jsonl").open("ab") as handle:
        handle.write(b'{"update": 5, "epis')
    assert invoke("plot", run_dir, "-o", run_dir.parent / "p.png").exit_code == 0
    result = invoke("run", "--resume", run_dir, "--episodes", 10, "-q")
    assert result.exit_code == 0, result.output
    assert_resumed_to(run_dir, episodes=10, updates=5)


def test_eval_accepts_a_checkpoint_inside_a_run_directory(run_dir):
    result = invoke("eval", "--checkpoint", run_dir / "checkpoints" / NEWEST, "--episodes", 2, "--num-envs", 1,
                    "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["episodes"] == 2


TRAINING_STATE_DAMAGE = {"truncated trainer state": ("trainer.pt", truncate),
                         "a flipped byte in the trainer state": ("trainer.pt", flip),
                         "trainer state deleted": ("trainer.pt", Path.unlink),
                         "state JSON cut short": ("state.json", cut_state)}


@pytest.mark.parametrize("damage", list(TRAINING_STATE_DAMAGE))
def test_a_checkpoint_whose_training_state_alone_is_damaged_still_evaluates(run_dir, tmp_path, tiny_model_dir,
                                                                            damage):
    """eval (and --init-adapter) read a checkpoint's adapter, never its trainer state: the adapter's files are
    verified by their checksums, and used."""
    name, spoil = TRAINING_STATE_DAMAGE[damage]
    checkpoint = run_dir / "checkpoints" / NEWEST
    spoil(checkpoint / name)
    result = invoke("eval", "--checkpoint", checkpoint, "--episodes", 2, "--num-envs", 1, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["episodes"] == 2
    started = invoke("run", *RUN, "--model", tiny_model_dir, "--init-adapter", checkpoint, "--episodes", 2,
                     "--no-score-policy", "-o", tmp_path / "new")
    assert started.exit_code == 0, started.output


@pytest.mark.parametrize("where, name, spoil", [
    ("adapter", "adapter_model.safetensors", lambda p: truncate(p, 0.9)),
    ("adapter", "value_head.safetensors", lambda p: truncate(p, 0.001)),
    ("adapter", "adapter_config.json", cut_state),
    ("adapter", "adapter_model.safetensors", flip),
    (f"checkpoints/{NEWEST}", "adapter_model.safetensors", lambda p: truncate(p, 0.5)),
])
def test_a_damaged_adapter_is_named_before_the_model_loads(run_dir, tmp_path, tiny_model_dir, monkeypatch, where,
                                                           name, spoil):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    spoil(run_dir / where / name)
    monkeypatch.setattr("llamagym.run.setup.load_model", no_loading)
    assert_one_line_error(invoke("eval", "--checkpoint", run_dir / where, "--episodes", 1, "-q"), name)
    out = tmp_path / "new"
    assert_one_line_error(invoke("run", *RUN, "--model", tiny_model_dir, "--init-adapter", run_dir / where, "-o", out),
                          name)
    assert not out.exists()


# --- the property: damage anywhere, then resume -------------------------------------------------------------------

def _damage(path, kind, where):
    data = path.read_bytes()
    if kind == "delete":
        path.unlink()
    elif kind == "truncate":
        path.write_bytes(data[:int(len(data) * where)])
    elif data:
        flip(path, int(len(data) * where) % len(data))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(data=st.data())
def test_any_damage_resumes_from_the_newest_intact_checkpoint_or_stops_with_one_line(finished_run,
                                                                                    tmp_path_factory, data):
    run_dir = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(finished_run, run_dir)
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock")
    target = run_dir / data.draw(st.sampled_from(files), label="file")
    kind = data.draw(st.sampled_from(["truncate", "flip", "delete"]), label="damage")
    _damage(target, kind, data.draw(st.floats(0.0, 0.99), label="where"))
    before = snapshot(run_dir)

    result = invoke("run", "--resume", run_dir, "--episodes", 10, "-q")

    assert "Traceback" not in result.output
    if result.exit_code != 0:  # stopped: one line, and nothing already written is changed
        assert result.exit_code in (1, 2)
        assert result.output.strip().splitlines()[-1].startswith("Error:"), result.output
        assert {k: v for k, v in snapshot(run_dir).items() if k != ".lock"} == \
            {k: v for k, v in before.items() if k != ".lock"}
        return
    # continued from update 4 (or, the newest checkpoint damaged, from update 2): the same rows either way
    assert_resumed_to(run_dir, episodes=10, updates=5)
    from llamagym.run.rundir import latest_checkpoint

    state = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())
    assert (state["episodes"], state["updates"], state["metrics_rows"], state["episode_rows"]) == (10, 5, 5, 10)


def test_a_full_disk_is_one_line_and_the_run_resumes_after(tiny_model_dir, tmp_path, monkeypatch):
    import errno

    from llamagym.run import metrics

    real = metrics.JsonlWriter.write

    def disk_fills_up(self, row):
        if self.path.name == "metrics.jsonl" and row.get("update") == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real(self, row)

    out = tmp_path / "run"
    monkeypatch.setattr(metrics.JsonlWriter, "write", disk_fills_up)
    result = invoke("run", *RUN, "--model", tiny_model_dir, "--episodes", 8, "-o", out)
    assert_one_line_error(result, "No space left on device", "metrics.jsonl", "--resume")
    assert not list(out.glob("*.tmp"))
    assert [r["update"] for r in rows(out / "metrics.jsonl")] == [1, 2]  # as of the checkpoint of update 2
    monkeypatch.setattr(metrics.JsonlWriter, "write", real)  # space freed
    result = invoke("run", "--resume", out, "-q")
    assert result.exit_code == 0, result.output
    assert_resumed_to(out, episodes=8, updates=4)
