"""Tiny models for tests: a few-layer Llama built from a config and a byte-level BPE tokenizer trained here,
with a chat template, so agents, the trainer and the CLI can be exercised in seconds with no download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "You are an expert blackjack player. Your current total is 15. The dealer shows 10. hit stick stay stand",
    "Reply with one word: hit or stick. I hit. I stick. Play a move in column 1 2 3 4 5 6 7 row a b c",
    "system user assistant rock paper scissors call raise fold check X O . tic tac toe connect four",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 yes no up down left right action move",
]


def tiny_tokenizer(vocab_size: int = 384) -> Any:
    """A byte-level BPE tokenizer trained on a few sentences; every string round-trips."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # loaded when one is built
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(tokenizer: Any, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Any:
    """A randomly initialised Llama small enough to train in milliseconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def tiny_model_and_tokenizer(seed: int = 0) -> tuple[Any, Any]:
    tokenizer = tiny_tokenizer()
    return tiny_model(tokenizer, seed), tokenizer


def save_tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny model and its tokenizer to `directory`, loadable with `--model DIRECTORY`."""
    model, tokenizer = tiny_model_and_tokenizer(seed)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
