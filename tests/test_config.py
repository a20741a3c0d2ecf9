"""Config files and command-line overrides."""

import re

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


@pytest.mark.parametrize("target", ["megc2019", "casme2", "samm", "smic", "casme3"])
def test_real_stages_train_what_deft_trains_in_each(target):
  """Stage 1 aligns on another corpus with the LLM frozen and no LoRA; stage 2 tunes LoRA on
  the target's Uni-MER set in its own class scheme."""
  from configs import stage1_real, stage2_real  # pylint: disable=import-outside-toplevel
  first, second = stage1_real.get_config(target), stage2_real.get_config(target)
  scheme, corpus = stage1_real.TARGETS[target]
  assert first.data.name == f"uni_mer/{corpus}" != second.data.name == f"uni_mer/{target}"
  assert not first.model.lora.enabled and first.optim.frozen == (r"^llm/",)
  for layers in ("layers", "layers_0"):  # scanned and unscanned LLMs alike
    assert second.model.lora.enabled and not re.fullmatch(second.optim.frozen[0], f"llm/{layers}/q_proj/lora_a")
    assert re.fullmatch(second.optim.frozen[0], f"llm/{layers}/q_proj/kernel")
  assert first.data.scheme == second.data.scheme == scheme
  assert first.train.steps == 2000 and second.train.steps == 1000
