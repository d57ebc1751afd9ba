"""Supervised fine-tuning of the LoRA adapter on collected conversations with trl's SFTTrainer: the warm start
before PPO. Every assistant turn is one example whose prompt is tokenised exactly as the agent prompts the model
(visible history, chat template, response prefix: the prefix belongs to the prompt) and whose loss covers only the
response tokens that follow it, and the end-of-turn token."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

IGNORE_INDEX = -100  # label of a token the loss skips (prompt tokens)
SFT_METRICS_FILE = "sft_metrics.jsonl"


@dataclass
class SFTSettings:
    """What `llamagym sft` trains with (the LoRA shape and the prompt layout come from the run config)."""

    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 16
    min_return: float | None = None
    unique: bool = False  # an example that repeats (same prompt, same answer) counts once


@dataclass
class Example:
    """One assistant turn: the prompt the agent would show, the response tokens it is trained to answer."""

    prompt_ids: list[int]
    completion_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * len(self.prompt_ids) + self.completion_ids


def conversation_examples(agent: Any, messages: Sequence[dict[str, str]]) -> list[Example]:
    """An example per assistant message of a conversation, tokenised as `agent` prompts the model."""
    prefix, tokenizer = agent.response_prefix, agent.tokenizer
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    examples = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if not message["content"].startswith(prefix):
            raise UsageError(f"an assistant message does not start with the agent's response prefix {prefix!r}: "
                             f"{message['content'][:60]!r}; collect conversations with the same agent")
        response = tokenizer(message["content"][len(prefix):], add_special_tokens=False)["input_ids"]
        examples.append(Example(agent.prompt_ids(list(messages[:index])), response + end))
    return examples


def dataset_examples(agent: Any, records: Sequence[dict[str, Any]], min_return: float | None = None
                     ) -> list[Example]:
    """The examples of every record whose return is at least `min_return` (all if None). Records with an invalid
    turn (an answer that named no valid action, replaced by the fallback) are left out: they teach no answer."""
    kept = [r for r in records if not r.get("invalid_turns")
            and (min_return is None or float(r.get("return", 0.0)) >= min_return)]
    return [example for record in kept for example in conversation_examples(agent, record["messages"])]


def unique_examples(examples: Sequence[Example]) -> list[Example]:
    """The examples with repeats (the same prompt and answer tokens) removed, first occurrence kept."""
    seen: dict[tuple[tuple[int, ...], tuple[int, ...]], Example] = {}
    for example in examples:
        seen.setdefault((tuple(example.prompt_ids), tuple(example.completion_ids)), example)
    return list(seen.values())


def fine_tune(agent: Any, examples: Sequence[Example], settings: SFTSettings, *, seed: int = 0,
              precision: str = "fp32", show_progress: bool = True) -> list[dict[str, Any]]:
    """Train the agent's LoRA adapter on `examples` with trl's SFTTrainer (mixed precision as `precision` resolves
    on the agent's device, as for PPO); returns the trainer's log rows."""
    with tempfile.TemporaryDirectory(prefix="llamagym-sft-") as scratch:
        trainer = sft_trainer(agent, examples, settings, scratch, seed=seed, precision=precision,
                              show_progress=show_progress)
        trainer.train()
        history = list(trainer.state.log_history)
    agent.model.eval()
    return history


def sft_trainer(agent: Any, examples: Sequence[Example], settings: SFTSettings, scratch: str, *, seed: int = 0,
                precision: str = "fp32", show_progress: bool = True) -> Any:
    """A trl `SFTTrainer` for the agent's adapter on pre-tokenised examples: trl keeps their `labels`, so the loss
    covers the response tokens only."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from .precision import resolve_precision

    if not agent.model.is_peft_model:
        raise UsageError("llamagym sft trains a LoRA adapter; enable LoRA (drop --no-lora)")
    dataset = Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                                 "labels": [e.labels for e in examples]})
    steps = max(1, round(len(examples) * settings.epochs / settings.batch_size))
    dtype = resolve_precision(precision, agent.device)
    args = SFTConfig(output_dir=scratch, num_train_epochs=settings.epochs, learning_rate=settings.learning_rate,
                     per_device_train_batch_size=settings.batch_size, lr_scheduler_type="constant",
                     logging_steps=max(1, steps // 20), save_strategy="no", report_to="none", seed=seed,
                     gradient_checkpointing=False, max_length=None, use_cpu=agent.device.type == "cpu",
                     bf16=dtype is torch.bfloat16, fp16=dtype is torch.float16, disable_tqdm=not show_progress,
                     log_level="warning")
    trainer = SFTTrainer(model=agent.model.pretrained_model, args=args, train_dataset=dataset,
                         processing_class=agent.tokenizer)
    trainer.remove_callback(PrinterCallback)  # without a progress bar, transformers would print every log row
    return trainer


def run_sft(config: Any, data: Sequence[str], output: Path, settings: SFTSettings, *, overwrite: bool = False,
            show_progress: bool = True) -> dict[str, Any]:
    """`llamagym sft`: fine-tune on the conversations in `data`, save the adapter to `output/adapter` with the run
    config (so `llamagym eval --checkpoint OUTPUT` and `llamagym run --init-adapter OUTPUT` find both)."""
    from .checkpoint import atomic_write_text, save_model_dir
    from .collect import read_conversations
    from .config import to_dict
    from .rundir import CONFIG_FILE, check_output, claimed
    from .runner import ADAPTER_DIR, SUMMARY_FILE, build_agent

    check_output(output, resume=False, overwrite=overwrite)
    records = read_conversations(data)
    agent = build_agent(config)
    examples = dataset_examples(agent, records, settings.min_return)
    if settings.unique:
        examples = unique_examples(examples)
    if not examples:
        raise UsageError(f"no assistant turns to train on in {', '.join(data)}"
                         + (f" with a return of at least {settings.min_return}" if settings.min_return is not None
                            else ""))
    started = time.perf_counter()
    with claimed(output, resume=False, overwrite=overwrite):
        history = fine_tune(agent, examples, settings, seed=config.seed, precision=config.precision,
                            show_progress=show_progress)
        save_model_dir(agent, output / ADAPTER_DIR)
        atomic_write_text(output / CONFIG_FILE, json.dumps({"config": to_dict(config), "sft": {
            **asdict(settings), "data": [str(p) for p in data]}}, indent=2))
        atomic_write_text(output / SFT_METRICS_FILE, "".join(json.dumps(row) + "\n" for row in history))
        losses = [row["loss"] for row in history if "loss" in row]
        summary = {"output": str(output), "conversations": len(records), "examples": len(examples),
                   "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                   "wall_time_s": time.perf_counter() - started, "adapter": str(output / ADAPTER_DIR)}
        atomic_write_text(output / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


__all__ = ["SFTSettings", "Example", "conversation_examples", "dataset_examples", "fine_tune", "run_sft"]
