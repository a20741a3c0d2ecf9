"""Config files and command-line overrides."""

import pytest

from deft_jax import cli


def test_override_nested_field_and_variant():
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny", "--config.train.steps=7",
                         "--config.model.lora.rank=4", "--config.mesh.fsdp=2"])
  assert cfg.train.steps == 7 and cfg.model.lora.rank == 4 and cfg.mesh.fsdp == 2
  assert cfg.data.name == "synthetic_me/tiny"


def test_misspelt_field_is_named():
  with pytest.raises(cli.ConfigError, match="train.stepz"):
    cli.load_config(["--config", "configs/synthetic.py", "--config.train.stepz=3"])


def test_wrong_type_is_reported():
  with pytest.raises(cli.ConfigError, match="train.steps"):
    cli.load_config(["--config", "configs/synthetic.py", "--config.train.steps=many"])


def test_locked_config_refuses_new_fields():
  cfg = cli.load_config(["--config", "configs/synthetic.py"])
  with pytest.raises(AttributeError):
    cfg.train.stepz = 3


def test_unknown_variant():
  with pytest.raises(cli.ConfigError, match="huge"):
    cli.load_config(["--config", "configs/synthetic.py:huge"])
