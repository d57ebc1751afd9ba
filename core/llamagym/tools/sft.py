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
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamagym.config import RunConfig, to_dict
from llamagym.errors import UsageError
from llamagym.run.rundir import ADAPTER_DIR, CONFIG_FILE, SFT_METRICS_FILE, SUMMARY_FILE, check_output, claimed
from llamagym.run.setup import build_agent
from llamagym.tools.collect import read_conversations

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

IGNORE_INDEX = -100  # label of a token the loss skips (prompt tokens)


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


def conversation_examples(agent: Agent, messages: Sequence[dict[str, str]]) -> list[Example]:
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


def dataset_examples(agent: Agent, records: Sequence[dict[str, Any]], min_return: float | None = None
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


def fine_tune(agent: Agent, examples: Sequence[Example], settings: SFTSettings, *, seed: int = 0,
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


def sft_trainer(agent: Agent, examples: Sequence[Example], settings: SFTSettings, scratch: str, *, seed: int = 0,
                precision: str = "fp32", show_progress: bool = True) -> Any:
    """A trl `SFTTrainer` for the agent's adapter on pre-tokenised examples: trl keeps their `labels`, so the loss
    covers the response tokens only (computed as the PPO trainer scores responses, see `response_trainer_class`)."""
    import torch  # torch, datasets, transformers, trl: loaded when fine-tuning starts, not by `--help`
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig

    from llamagym.policy.precision import resolve_precision

    if not agent.model.is_peft_model:
        raise UsageError("llamagym sft trains a LoRA adapter; enable LoRA (drop --no-lora)")
    dataset = Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                                 "labels": [e.labels for e in examples]})
    steps = max(1, round(len(examples) * settings.epochs / settings.batch_size))
    dtype = resolve_precision(precision, agent.device)
    # trl turns checkpointing on by default; transformers >= 5.2x renamed the setting
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__
                     else "gradient_checkpointing")
    no_checkpointing: dict[str, Any] = {checkpointing: False}
    args = SFTConfig(output_dir=scratch, num_train_epochs=settings.epochs, learning_rate=settings.learning_rate,
                     per_device_train_batch_size=settings.batch_size, lr_scheduler_type="constant",
                     logging_steps=max(1, steps // 20), save_strategy="no", report_to="none", seed=seed,
                     max_length=None, use_cpu=agent.device.type == "cpu", bf16=dtype is torch.bfloat16,
                     fp16=dtype is torch.float16, disable_tqdm=not show_progress, log_level="warning",
                     **no_checkpointing)
    trainer = response_trainer_class()(agent.model, model=agent.model.pretrained_model, args=args,
                                       train_dataset=dataset, processing_class=agent.tokenizer)
    trainer.remove_callback(PrinterCallback)  # without a progress bar, transformers would print every log row
    return trainer


@dataclass
class ResponseCollator:
    """Batches for `response_trainer_class`: left-padded prompt + response rows after the prompt prefix they all
    share (the PPO trainer's layout), `targets` and `mask` marking the response tokens among the last positions."""

    pad_token_id: int
    share_prefix: bool = True

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch  # torch: loaded on first use

        from llamagym.policy.generation import shared_prefix_length
        from llamagym.algo.trainer import Sample, make_batch

        samples = []
        for feature in features:
            prompt = next((i for i, label in enumerate(feature["labels"]) if label != IGNORE_INDEX),
                          len(feature["labels"]))
            samples.append(Sample(list(feature["input_ids"][:prompt]), list(feature["input_ids"][prompt:]), 0.0, 0))
        prefix = shared_prefix_length([s.query for s in samples], keep=1) if self.share_prefix else 0
        batch = make_batch(samples, self.pad_token_id, torch.device("cpu"), prefix)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "targets": batch.targets,
                "mask": batch.mask, "prefix_ids": batch.prefix_ids}


@lru_cache(maxsize=None)
def response_trainer_class() -> type:
    """trl's `SFTTrainer` with the loss computed where it is needed: the shared prompt prefix (system prompt, chat
    template) runs once per batch and the vocabulary projection only at response positions, as in the PPO trainer.
    The same negative log-likelihood as trl's own loss, several times cheaper for short answers after long prompts
    (trl's chunked LM-head kernel is slow on a CPU)."""
    from trl import SFTTrainer
    from trl.trainer.utils import selective_log_softmax

    class ResponseSFTTrainer(SFTTrainer):
        def __init__(self, policy: Any, **kwargs: Any):
            self.policy = policy  # the AutoModelForCausalLMWithValueHead around the peft model being trained
            super().__init__(**kwargs)
            self.data_collator = ResponseCollator(policy.base_model.config.pad_token_id
                                                  if kwargs["processing_class"].pad_token_id is None
                                                  else kwargs["processing_class"].pad_token_id,
                                                  share_prefix=policy.splits_decoder)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            mask = inputs["mask"]
            logits, _ = self.policy.response_logits_and_values(inputs["input_ids"], inputs["attention_mask"],
                                                               mask.shape[1], inputs["prefix_ids"])
            logprobs = selective_log_softmax(logits, inputs["targets"])
            loss = -(logprobs * mask).sum() / mask.sum().clamp(min=1)
            mode = "train" if model.training else "eval"
            correct = ((logits.argmax(-1) == inputs["targets"]).float() * mask).sum() / mask.sum().clamp(min=1)
            self._metrics[mode]["mean_token_accuracy"].append(float(correct))
            return (loss, {"logits": logits}) if return_outputs else loss

    return ResponseSFTTrainer


def run_sft(config: RunConfig, data: Sequence[str], output: Path, settings: SFTSettings, *, overwrite: bool = False,
            show_progress: bool = True) -> dict[str, Any]:
    """`llamagym sft`: fine-tune on the conversations in `data`, save the adapter to `output/adapter` with the run
    config (so `llamagym eval --checkpoint OUTPUT` and `llamagym run --init-adapter OUTPUT` find both)."""
    from llamagym.run.checkpoint import atomic_write_text, save_model_dir  # imports torch: not for --help

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
