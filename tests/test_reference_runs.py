"""Bit-identical behaviour across refactors: seeded tiny-model runs (Blackjack with GAE, free text, GRPO and
REINFORCE; a SIGKILLed and resumed run; two gloo processes; tic-tac-toe self-play and against a fixed opponent)
produce the same `metrics.jsonl` and `episodes.jsonl` (every non-timing field) and the same trained adapter as the
reference recorded on this kind of CPU from the code before a change (`tests/reference_runs.py`)."""

import json

import pytest

import reference_runs

# fields a later commit adds to a case's rows on purpose (the reference rows must still match on every field)
GAME_STATS = {"game/games", "game/win_rate", "game/draw_rate", "game/loss_rate", "game/illegal_rate",
              "game/other_policy_rate"}
ADDED_FIELDS: dict[str, dict[str, set[str]]] = {
    # the one loop logs dropped episodes for N processes too (the separate multi-process loop did not)
    "blackjack-two-processes": {"metrics": {"env/dropped_episodes"}},
    # a game run's last update (the partial batch left at the end) is logged like every other update, with the
    # game results since the one before (the old run loop trained it behind the engine's back, without them)
    "tictactoe-selfplay": {"metrics": GAME_STATS},
}
# every episode row records the conversation the model saw (issue 18: `messages`, record_conversations = 1), and
# an update with a value head reports how well it predicted the returns (issue 16: `ppo/explained_variance`)
for _case in reference_runs.CASES:
    ADDED_FIELDS.setdefault(_case, {}).setdefault("episodes", set()).add("messages")
    ADDED_FIELDS[_case].setdefault("metrics", set()).add("ppo/explained_variance")
# fields whose values a later commit changes on purpose: compared by their new rule instead
# (issue 19: a game's metrics count games, as summary.json does, where self-play counted every seat's episode)
CHANGED_FIELDS: dict[str, dict[str, set[str]]] = {"tictactoe-selfplay": {"metrics": {"episodes"}}}


def check_changed_fields(case, outputs):
    if "episodes" in CHANGED_FIELDS.get(case, {}).get("metrics", set()):
        counted = [row["episodes"] for row in outputs["metrics"]]
        assert counted == sorted(counted) and counted[-1] == len(outputs["episodes"]), counted


@pytest.fixture(scope="module")
def reference():
    path = reference_runs.reference_file()
    if not path.exists():
        pytest.skip(f"no reference recorded on a {reference_runs.cpu_capability()} CPU ({path.name}): bit-identical "
                    f"outputs hold per kind of CPU only; see tests/reference_runs.py to record one")
    return json.loads(path.read_text())


@pytest.mark.parametrize("case", list(reference_runs.CASES))
def test_a_seeded_run_is_the_reference_run(case, reference, tiny_model_dir, tmp_path):
    outputs = reference_runs.run_case(case, tiny_model_dir, tmp_path)
    added, changed = ADDED_FIELDS.get(case, {}), CHANGED_FIELDS.get(case, {})
    for name in ("metrics", "episodes"):
        expected, allowed, other = reference[case][name], added.get(name, set()), changed.get(name, set())
        assert len(outputs[name]) == len(expected), name
        rows = [{k: v for k, v in row.items() if (k in before or k not in allowed) and k not in other}
                for row, before in zip(outputs[name], expected)]  # an added field, where the reference lacks it
        expected = [{k: v for k, v in row.items() if k not in other} for row in expected]
        assert reference_runs.canonical(rows) == reference_runs.canonical(expected), name
    check_changed_fields(case, outputs)
    assert outputs["adapter"] == reference[case]["adapter"]
