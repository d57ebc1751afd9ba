"""Shared fixtures: short names for llamagym's pytest fixtures, and a private model cache per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# tiny models: thread start-up and synchronisation cost more than the arithmetic (inherited by subprocesses)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LLAMAGYM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def bare_pm(llamagym_plugin_manager):
    return llamagym_plugin_manager


@pytest.fixture
def tiny(llamagym_tiny):
    return llamagym_tiny


@pytest.fixture(scope="session")
def tiny_model_dir(llamagym_tiny_model_dir):
    return llamagym_tiny_model_dir
