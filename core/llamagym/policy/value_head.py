"""A causal language model with a scalar value head: the policy and critic that PPO trains.

trl 1.x dropped its `AutoModelForCausalLMWithValueHead`; this one keeps the name and the common calls
(`from_pretrained`, `forward` returning ``(logits, loss, values)``, `generate`, `save_pretrained`) and adds the
pieces PPO needs: log-probs and values for the response positions only, and the reference forward with LoRA
adapters switched off.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from llamagym.policy.trunk import layer_range
from llamagym.run.rundir import VALUE_HEAD_FILE



def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generation computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel  # peft, transformers: seconds to import; loaded with the first model
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


class AutoModelForCausalLMWithValueHead(nn.Module):
    """Wraps a causal LM (plain or peft) and adds `v_head`, a linear map from the last hidden state to a value."""

    def __init__(self, pretrained_model: nn.Module):
        super().__init__()
        # a transformers model or a peft wrapper of one: its methods (get_base_model, generate, disable_adapter, ...)
        # are not on nn.Module, so the type says Any
        self.pretrained_model: Any = pretrained_model
        config = self.base_model.config
        hidden_size = getattr(config, "hidden_size", None) or getattr(config, "n_embd")
        self.v_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.v_head.weight)  # start from "every state is worth 0"; gradients still flow
        nn.init.zeros_(self.v_head.bias)
        self.v_head.to(device=next(pretrained_model.parameters()).device, dtype=torch.float32)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *args: Any, peft_config: Any = None,
                        **kwargs: Any) -> "AutoModelForCausalLMWithValueHead":
        """Load a causal LM as `transformers.AutoModelForCausalLM.from_pretrained` does; add LoRA from
        `peft_config` if given, and the saved value head if the directory has one."""
        from transformers import AutoModelForCausalLM  # transformers: most of a second to import, beyond torch

        model = AutoModelForCausalLM.from_pretrained(name_or_path, *args, **kwargs)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        wrapped = cls(model)
        wrapped.load_value_head(name_or_path)
        return wrapped

    @classmethod
    def wrap(cls, model: nn.Module) -> "AutoModelForCausalLMWithValueHead":
        """Return `model` itself if it already has a value head, else wrap it in one."""
        return model if isinstance(model, cls) else cls(model)

    @property
    def is_peft_model(self) -> bool:
        return is_peft_model(self.pretrained_model)

    @property
    def base_model(self) -> Any:
        """The transformers model underneath any peft wrapper (LoRA layers stay injected in it)."""
        return self.pretrained_model.get_base_model() if self.is_peft_model else self.pretrained_model

    @property
    def config(self) -> Any:
        return self.base_model.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, None, torch.Tensor]:
        """trl-compatible: ``(logits, None, values)`` for every position."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs.setdefault("position_ids", position_ids_from_mask(attention_mask))
        out = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask,
                                    output_hidden_states=True, **kwargs)
        values = self.v_head(out.hidden_states[-1].float()).squeeze(-1)
        return out.logits, None, values

    def response_logits_and_values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                   num_response_tokens: int, prefix_ids: torch.Tensor | None = None,
                                   trunk: tuple[int, torch.Tensor] | None = None
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (float32) and values for the last `num_response_tokens` positions of left-padded sequences.

        Entry j scores the token at position ``L - K + j`` from the hidden state before it, so the vocabulary
        projection runs on K positions only. With `prefix_ids` (1, P), a prefix every row shares, `input_ids` holds
        only what follows it and `attention_mask` covers prefix and rest: the prefix is computed once, not per row.
        With `trunk` (F, states), the states entering layer F at `input_ids`' positions (`trunk_states`), only the
        layers from F on run (`llamagym.policy.trunk`).
        """
        hidden = self.hidden_states(input_ids, attention_mask, prefix_ids, trunk=trunk)
        k = num_response_tokens
        hidden = hidden[:, -k - 1:-1]
        head = self.base_model.get_output_embeddings()
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            logits = head(hidden.to(head.weight.dtype)).float()
            values = self.v_head(hidden.float()).squeeze(-1)
        return logits, values

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      prefix_ids: torch.Tensor | None = None, cache: Any = None,
                      position_ids: torch.Tensor | None = None, trunk: tuple[int, torch.Tensor] | None = None
                      ) -> torch.Tensor:
        """Last-layer hidden states of `input_ids`, after an optional shared prefix or a KV `cache` (which the
        call extends). Positions default to counting the unpadded tokens after an unpadded cached part. With
        `trunk` (F, states), the layers from F on run on `states`, the hidden states entering layer F at
        `input_ids`' positions (`trunk_states`), instead of the whole decoder on the tokens."""
        decoder = self.decoder
        if prefix_ids is not None:
            cache = self.prefix_cache(prefix_ids, input_ids.shape[0])  # every layer's: the top ones read theirs
        inputs = {"input_ids": input_ids} if trunk is None else {"inputs_embeds": trunk[1]}
        layers = contextlib.nullcontext() if trunk is None else layer_range(decoder, trunk[0], None)
        if cache is not None:
            if position_ids is None:
                past = cache.get_seq_length()
                position_ids = past + position_ids_from_mask(attention_mask[:, past:])
            with layers:
                out = decoder(**inputs, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                              use_cache=True)
            return out.last_hidden_state
        position_ids = position_ids_from_mask(attention_mask) if position_ids is None else position_ids
        if decoder is not self.base_model:
            with layers:
                return decoder(**inputs, attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=False).last_hidden_state
        out = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask,
                                    position_ids=position_ids, output_hidden_states=True, use_cache=False)
        return out.hidden_states[-1]

    def trunk_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int,
                     prefix_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The hidden states entering decoder layer `layer` at `input_ids`' positions (after an optional shared
        prefix): the input of `hidden_states(..., trunk=(layer, states))`."""
        with layer_range(self.decoder, 0, layer, final_norm=False):
            return self.hidden_states(input_ids, attention_mask, prefix_ids)

    def prefix_cache(self, prefix_ids: torch.Tensor, batch_size: int) -> Any:
        """The KV cache of one shared prefix, computed once and repeated for `batch_size` rows."""
        from transformers import DynamicCache  # transformers: as in from_pretrained

        cache = DynamicCache()
        positions = torch.arange(prefix_ids.shape[1], device=prefix_ids.device)[None]
        self.decoder(input_ids=prefix_ids, position_ids=positions, cache=cache, use_cache=True)
        cache.batch_repeat_interleave(batch_size)
        return cache

    @property
    def decoder(self) -> nn.Module:
        """The transformer body without the vocabulary projection (the model itself if it cannot be split)."""
        get_decoder = getattr(self.base_model, "get_decoder", None)
        decoder = get_decoder() if get_decoder is not None else None
        return decoder if decoder is not None else self.base_model

    @property
    def splits_decoder(self) -> bool:
        """Whether the body runs apart from the head (needed for KV caches and shared prefixes)."""
        return self.decoder is not self.base_model

    def next_token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Float32 next-token logits from the hidden state of each row's last position."""
        last = hidden[:, -1]
        head = self.base_model.get_output_embeddings()
        with torch.autocast(device_type=last.device.type, enabled=False):
            return head(last.to(head.weight.dtype)).float()

    def generate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.pretrained_model.generate(*args, **kwargs)

    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """Run the frozen reference policy inside this block: the base weights with LoRA adapters disabled."""
        if not self.is_peft_model:
            raise RuntimeError("the reference-by-disabling-adapters needs a peft model; "
                               "full fine-tuning keeps a separate reference copy")
        with self.pretrained_model.disable_adapter():
            yield

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        """Save the adapter (or the whole model) and the value head."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.pretrained_model.save_pretrained(directory, **kwargs)
        state = {k: v.detach().cpu().contiguous() for k, v in self.v_head.state_dict().items()}
        save_file(state, str(directory / VALUE_HEAD_FILE))

    def load_value_head(self, directory: str | Path) -> bool:
        """Load `value_head.safetensors` from a local directory if it is there; return whether it was."""
        path = Path(directory) / VALUE_HEAD_FILE
        if not path.is_file():
            return False
        self.v_head.load_state_dict(load_file(str(path), device=str(self.v_head.weight.device)))
        return True

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def describe(self) -> str:
        trainable = sum(p.numel() for p in self.trainable_parameters())
        total = sum(p.numel() for p in self.parameters())
        return json.dumps({"trainable_parameters": trainable, "parameters": total})
