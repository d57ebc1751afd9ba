"""llamagym plugin: the `qa` agent and the `QA-v0` environment, questions from a JSONL file whose answers an LLM
judge grades (`llamagym.judging`)."""
