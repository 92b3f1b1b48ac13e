"""Server settings: flags beat ORLOJ_* variables beat defaults; bad values name the flag and variable."""

import pickle

import pytest

from orloj_ray.config import ConfigError, ServerConfig, mask_url


def test_defaults_are_the_embedded_system():
    config = ServerConfig.from_env({})
    assert (config.mode, config.store, config.log) == ("message-driven", "memory", "memory")
    assert config.tool_allowed_networks == ()


def test_environment_then_explicit_values():
    env = {"ORLOJ_MODE": "Sequential", "ORLOJ_LOG": "jetstream", "ORLOJ_TOOL_ALLOWED_NETWORKS": "127.0.0.0/8, 10.0.0.0/8"}
    config = ServerConfig.from_env(env)
    assert config.mode == "sequential" and config.log == "jetstream"
    assert config.tool_allowed_networks == ("127.0.0.0/8", "10.0.0.0/8")
    assert ServerConfig.from_env(env, mode="message-driven", log=None).mode == "message-driven"
    assert ServerConfig.from_env(config.to_env()) == config  # round trip through a child's environment


@pytest.mark.parametrize("setting, value, needle", [
    ("mode", "turbo", "expected message-driven or sequential (--mode, or ORLOJ_MODE)"),
    ("store", "redis", "expected memory or postgres (--store, or ORLOJ_STORE)"),
    ("log", "kafka", "expected memory or jetstream (--log, or ORLOJ_LOG)"),
])
def test_bad_values_name_the_flag_and_variable(setting, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        ServerConfig.from_env({}, **{setting: value})


def test_postgres_needs_a_url():
    with pytest.raises(ConfigError, match="--database-url or ORLOJ_DATABASE_URL"):
        ServerConfig.from_env({}, store="postgres")


def test_describe_masks_secrets_and_the_config_pickles():
    config = ServerConfig.from_env({}, store="postgres", database_url="postgresql://orloj:hunter2@db:5432/orloj",
                                   api_tokens="tok-abc:admin")
    described = str(config.describe())
    assert "hunter2" not in described and "tok-abc" not in described
    assert "hunter2" not in repr(config) and "tok-abc" not in repr(config)
    assert pickle.loads(pickle.dumps(config)) == config
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
