"""Hook implementations: the `qa` agent and the `QA-v0` environment. No heavy imports here, so listing is fast."""

from __future__ import annotations

from pathlib import Path

from llamagym import hookimpl

PRESET = Path(__file__).with_name("preset.toml")


@hookimpl
def llamagym_register_agents(register):
    register("qa", "llamagym_qa.agent:QAAgent", description="answers a question in a few words, on one line",
             preset=str(PRESET))


@hookimpl
def llamagym_register_envs(register):
    register("QA-v0", "llamagym_qa.env:QAEnv",
             description="questions from a JSONL file ($LLAMAGYM_QA_FILE, else a shipped sample); an LLM judge "
                         "($LLAMAGYM_JUDGE_*) grades each answer")
