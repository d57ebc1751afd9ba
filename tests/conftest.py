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


@pytest.fixture
def with_plugins(monkeypatch):
    """`with_plugins(module, ...)`: the process-wide plugin manager (what the CLI uses) gets the installed plugins
    plus these modules, for this test only."""
    from llamagym.plugins import manager as plugins

    def install(*modules):
        manager = plugins.build_plugin_manager()
        for module in modules:
            manager.register(module, name=module.__name__)
        monkeypatch.setattr(plugins, "_manager", manager)
        return manager

    return install
