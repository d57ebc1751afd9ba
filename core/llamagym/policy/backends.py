"""Generation backends: what samples a policy's responses (`generation.backend`).

`transformers`, the default, samples with the policy model itself (`generation.sample_responses`): exact token
ids, any device. `vllm` hands the prompt token ids to a vLLM engine on the GPU together with the current LoRA
adapter, which it writes to a fresh directory under a fresh adapter id whenever PPO has changed the weights. The
PPO update scores the sampled tokens with the policy model either way, so vLLM's numerics never enter the loss.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llamagym.agent.choices import ChoiceTrie
from llamagym.errors import ConfigError, UsageError
from llamagym.policy.generation import Response, sample_responses

if TYPE_CHECKING:
    import vllm

    from llamagym.policy.policy import Policy

VLLM_EXTRA = "pip install 'llamagym[vllm]'"
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the adapter ranks a vLLM engine can be sized for

IsComplete = Callable[[int, list[int]], bool]


class TransformersBackend:
    """Sample with the policy model itself, one batched KV-cache pass per token."""

    name = "transformers"

    def generate(self, policy: Policy, prompts: Sequence[Sequence[int]], is_complete: IsComplete,
                 choices: Sequence[ChoiceTrie | None] | None = None) -> list[Response]:
        with policy.autocast():
            return sample_responses(policy.model, prompts, policy.generation, eos_token_ids=policy.eos_token_ids,
                                    pad_token_id=policy.tokenizer.pad_token_id, is_complete=is_complete,
                                    choices=choices)


def import_vllm() -> Any:
    try:
        import vllm  # an optional extra
    except ImportError:
        raise UsageError(f"generation.backend = vllm needs vLLM, which is not installed: {VLLM_EXTRA} (a CUDA "
                         f"GPU is required), or use --generation-backend transformers") from None
    return vllm


class VLLMBackend:
    """Sample with a vLLM engine built on the policy's base model; the LoRA adapter follows every PPO update.

    `engine` is an existing `vllm.LLM` (built on first use when None); `keep` adapter directories are kept.
    """

    name = "vllm"

    def __init__(self, engine: vllm.LLM | None = None, keep: int = 2):
        self.engine, self.keep = engine, keep
        self.adapter_id = 0
        self.synced_update: int | None = None
        self.request: Any = None
        self._workdir: tempfile.TemporaryDirectory | None = None
        self.adapter_dirs: list[Path] = []

    def generate(self, policy: Policy, prompts: Sequence[Sequence[int]], is_complete: IsComplete,
                 choices: Sequence[ChoiceTrie | None] | None = None) -> list[Response]:
        if choices is not None and any(trie is not None for trie in choices):
            raise ConfigError("generation.constrained (sampling only among the agent's action_choices) needs the "
                              "transformers backend: pass --no-constrained to sample with vllm")
        vllm = import_vllm()
        request = self.sync_adapter(policy)
        engine = self._engine(policy, vllm)
        outputs = engine.generate([{"prompt_token_ids": list(p)} for p in prompts],
                                  sampling_params(vllm, policy.generation, policy.eos_token_ids),
                                  lora_request=request, use_tqdm=False)
        return [finish_response(out.outputs[0], policy.eos_token_ids, functools.partial(is_complete, row))
                for row, out in enumerate(outputs)]

    def sync_adapter(self, policy: Policy) -> Any:
        """The LoRA request for the policy's current weights: a new adapter directory and id after each update."""
        update = policy.trainer.updates
        if self.request is not None and update == self.synced_update:
            return self.request
        from vllm.lora.request import LoRARequest

        require_lora(policy)
        self.adapter_id += 1
        directory = self._root() / f"adapter-{self.adapter_id:06d}-update-{update:06d}"
        policy.model.pretrained_model.save_pretrained(directory)  # adapter_config.json + adapter weights only
        self.adapter_dirs.append(directory)
        for old in self.adapter_dirs[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        self.adapter_dirs = self.adapter_dirs[-self.keep:]
        self.request = LoRARequest(f"llamagym-policy-{self.adapter_id}", self.adapter_id, str(directory))
        self.synced_update = update
        return self.request

    def _root(self) -> Path:
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="llamagym-vllm-")
        return Path(self._workdir.name)

    def _engine(self, policy: Policy, vllm: Any) -> Any:
        if self.engine is None:
            dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"
            self.engine = vllm.LLM(model=base_model_path(policy), enable_lora=True, max_loras=1,
                                   max_lora_rank=vllm_lora_rank(lora_rank(policy)), dtype=dtype,
                                   gpu_memory_utilization=policy.generation.vllm_gpu_memory,
                                   seed=policy.seed or 0, skip_tokenizer_init=True)
        return self.engine


def require_lora(policy: Policy) -> None:
    if not policy.model.is_peft_model:
        raise UsageError("generation.backend = vllm follows the policy through its LoRA adapter; full fine-tuning "
                         "(lora.enabled = false) would need the whole model copied into vLLM after each update: "
                         "enable LoRA or use --generation-backend transformers")


def lora_rank(policy: Policy) -> int:
    require_lora(policy)
    config = policy.model.pretrained_model.peft_config
    return max(int(c.r) for c in config.values())


def vllm_lora_rank(rank: int) -> int:
    """The smallest adapter rank a vLLM engine can be sized for that holds `rank`."""
    for supported in VLLM_LORA_RANKS:
        if supported >= rank:
            return supported
    raise ConfigError(f"lora.r = {rank} is larger than vLLM supports ({VLLM_LORA_RANKS[-1]})")


def base_model_path(policy: Policy) -> str:
    """Where the policy's base model was loaded from (a directory or hub id vLLM can load)."""
    path = getattr(policy.model.base_model.config, "_name_or_path", "") or ""
    if not path:
        raise UsageError("generation.backend = vllm needs a model loaded from a directory or Hugging Face id "
                         "(--model), so that vLLM can load the same base weights")
    return path


def sampling_params(vllm: Any, settings: Any, eos_token_ids: set[int]) -> Any:
    """vLLM's SamplingParams for the agent's GenerationConfig (top_k left at vLLM's default when 0: all)."""
    extra = {"top_k": settings.top_k} if settings.top_k > 0 else {}
    return vllm.SamplingParams(n=1, temperature=settings.temperature if settings.do_sample else 0.0,
                               top_p=settings.top_p, max_tokens=settings.max_new_tokens,
                               stop_token_ids=sorted(eos_token_ids), detokenize=False, **extra)


def finish_response(output: Any, eos_token_ids: set[int], is_complete: Callable[[list[int]], bool]) -> Response:
    """A vLLM completion cut where `sample_responses` would have stopped: after the first end-of-turn token, or
    once the agent says the response holds an action (the tokens vLLM sampled past that point are dropped)."""
    ids = list(output.token_ids)
    stopped_on = getattr(output, "stop_reason", None)
    if output.finish_reason == "stop" and (not ids or ids[-1] not in eos_token_ids) and isinstance(stopped_on, int):
        ids.append(stopped_on)  # the stop token, where the engine left it out of the ids
    for end, token in enumerate(ids, start=1):
        if token in eos_token_ids:
            return Response(ids[:end], "eos")
        if is_complete(ids[:end]):
            return Response(ids[:end], "complete")
    return Response(ids, "length")


BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def make_backend(name: str) -> Any:
    """The backend called `name`; vllm is checked for at once, so a missing install fails before any rollout."""
    if name not in BACKENDS:
        raise ConfigError(f"generation.backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "vllm":
        import_vllm()
    return BACKENDS[name]()


__all__ = ["TransformersBackend", "VLLMBackend", "make_backend", "finish_response", "VLLM_EXTRA"]
