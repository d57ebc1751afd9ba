"""Bit-identical behaviour across refactors: seeded tiny-model runs (Blackjack with GAE, free text, GRPO and
REINFORCE; a SIGKILLed and resumed run; two gloo processes; tic-tac-toe self-play and against a fixed opponent)
produce the same `metrics.jsonl` and `episodes.jsonl` (every non-timing field) and the same trained adapter as the
reference recorded at f202ad1, the commit before the one-loop redesign (`tests/reference_runs.py`)."""

import json

import pytest

import reference_runs

# fields a later commit adds to a case's rows on purpose (the reference rows must still match on every field)
ADDED_FIELDS: dict[str, dict[str, set[str]]] = {}


@pytest.fixture(scope="module")
def reference():
    return json.loads(reference_runs.REFERENCE.read_text())


@pytest.mark.parametrize("case", list(reference_runs.CASES))
def test_a_seeded_run_is_the_reference_run(case, reference, tiny_model_dir, tmp_path):
    outputs = reference_runs.run_case(case, tiny_model_dir, tmp_path)
    added = ADDED_FIELDS.get(case, {})
    for name in ("metrics", "episodes"):
        rows = [{k: v for k, v in row.items() if k not in added.get(name, set())} for row in outputs[name]]
        assert reference_runs.canonical(rows) == reference_runs.canonical(reference[case][name]), name
    assert outputs["adapter"] == reference[case]["adapter"]
