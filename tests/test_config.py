"""Config layering and validation: every bad key or value gets a message naming it."""

import pytest

from llamagym.config import RunConfig, build, load_toml, merge
from llamagym.errors import ConfigError


@pytest.mark.parametrize("data, message", [
    ({"episodes": 0}, "episodes must be at least 1, got 0"),
    ({"ppo": {"learning_rate": -0.1}}, "ppo.learning_rate must be greater than 0.0"),
    ({"ppo": {"batch_size": "16"}}, "ppo.batch_size must be an integer"),
    ({"ppo": {"gamma": 1.5}}, "ppo.gamma must be at most 1.0"),
    ({"generation": {"top_p": 0}}, "generation.top_p must be greater than 0.0"),
    ({"precision": "fp8"}, "precision must be one of auto, fp32, bf16, fp16"),
    ({"lora": 3}, "lora must be a table of settings"),
    ({"ppo": {"lr": 1e-4}}, "unknown config key 'ppo.lr'"),
    ({"lora": {"enabled": "maybe"}}, "lora.enabled must be true or false"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        build(RunConfig, data)


def test_layers_merge_section_by_section(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('episodes = 30\n[ppo]\nlearning_rate = 3e-4\n[generation]\nmax_new_tokens = 4\n')
    preset = {"episodes": 10, "ppo": {"batch_size": 8, "learning_rate": 1e-3}}
    flags = {"ppo": {"batch_size": 4}}
    config = build(RunConfig, merge(preset, load_toml(path), flags))
    assert config.episodes == 30
    assert config.ppo.batch_size == 4 and config.ppo.learning_rate == 3e-4
    assert config.generation.max_new_tokens == 4 and config.generation.temperature == 1.0


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("episodes = [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_toml(bad)
