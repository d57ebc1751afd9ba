"""The frozen trunk of a policy whose adapters sit on its last layers only (`lora.layers`): the layers below the
first adapted one never change during a run, so the hidden state entering that layer is a function of the tokens
alone. A PPO update computes it once per sequence, with no gradient, and every epoch's forward pass (and the
reference's, whose adapters are off) runs the layers above it only; with `lora.layers = 8` of SmolLM2's 30, a
pass costs 8 layers instead of 30:

    trunk:  h_F = layers[0:F](embed(tokens))                  once per sequence, no gradient
    top:    hidden = norm(layers[F:N](h_F))                    every forward pass and backward pass

The split reuses the decoder's own forward (its masks, rotary positions and KV cache), run on a slice of its
`layers` with `inputs_embeds`: decoders that run `self.layers` then `self.norm` on `inputs_embeds` as given
(Llama, Mistral, Qwen2/3, SmolLM). `frozen_layers` checks a model once against its full forward and answers 0 (no
split) for any other."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead

AGREEMENT = 1e-4  # how close the split forward's hidden states must be to the full one's (float32, relative)


@contextmanager
def layer_range(decoder: Any, start: int, stop: int | None, final_norm: bool = True) -> Iterator[None]:
    """Within the block, `decoder` runs its layers `start .. stop - 1` only (and, without `final_norm`, returns
    the hidden state they leave instead of its normalised last hidden state)."""
    layers, norm = decoder.layers, decoder.norm
    decoder.layers = nn.ModuleList(list(layers)[start:stop])
    if not final_norm:
        decoder.norm = nn.Identity()
    try:
        yield
    finally:
        decoder.layers, decoder.norm = layers, norm


def first_adapted_layer(policy: AutoModelForCausalLMWithValueHead) -> int:
    """F: the index of the first decoder layer with a trainable parameter, if nothing below it (the embeddings)
    trains; 0 when nothing can be split off (every layer trains, or the decoder is not a stack of `layers`)."""
    decoder: Any = policy.decoder
    layers = getattr(decoder, "layers", None)
    if not policy.splits_decoder or not isinstance(layers, nn.ModuleList) or not hasattr(decoder, "norm"):
        return 0
    embeddings = getattr(decoder, "get_input_embeddings", lambda: None)()
    if not isinstance(embeddings, nn.Module) or any(p.requires_grad for p in embeddings.parameters()):
        return 0
    for index, layer in enumerate(layers):
        if any(p.requires_grad for p in layer.parameters()):
            return index
    return 0  # no layer trains (an acting-only agent): nothing to save


@torch.no_grad()
def frozen_layers(policy: AutoModelForCausalLMWithValueHead) -> int:
    """F (`first_adapted_layer`) if the split forward gives this model's full forward on a probe, else 0."""
    layer = first_adapted_layer(policy)
    if layer == 0:
        return 0
    device = policy.device
    ids = torch.tensor([[1, 5, 9, 13, 17, 21], [0, 0, 4, 8, 12, 16]], device=device) % policy.config.vocab_size
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]], device=device)
    was_training = policy.training
    policy.eval()
    try:
        full = policy.hidden_states(ids, mask)
        split = policy.hidden_states(ids, mask, trunk=(layer, policy.trunk_states(ids, mask, layer)))
    except Exception:  # a decoder whose forward does not take a slice of its layers: no split
        return 0
    finally:
        policy.train(was_training)
    real = mask.bool()
    scale = full[real].abs().max().clamp(min=1.0)
    return layer if float((full[real] - split[real]).abs().max() / scale) <= AGREEMENT else 0
