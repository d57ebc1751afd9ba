"""Pytest fixtures for llamagym and its plugin packages (loaded automatically through the `pytest11` entry
point): a tiny model built locally, and a plugin manager holding only what a test registers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    import pluggy


@pytest.fixture
def llamagym_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the core's defaults only: register the plugin under test on it."""
    # pytest loads this plugin in every session where llamagym is installed: llamagym loads when a fixture runs
    from llamagym.plugins.manager import build_plugin_manager

    return build_plugin_manager(load_entry_points=False)


@pytest.fixture
def llamagym_tiny() -> tuple[Any, Any]:
    """(model, tokenizer): a randomly initialised two-layer Llama and a tokenizer trained locally."""
    from llamagym.testing import tiny_model_and_tokenizer

    return tiny_model_and_tokenizer(seed=0)


@pytest.fixture(scope="session")
def llamagym_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model saved to disk, for `llamagym run --model DIR`."""
    from llamagym.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))
