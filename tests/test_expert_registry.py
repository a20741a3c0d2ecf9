"""A fourth expert is its own module and a config entry: this file is that module (EXPERT below),
and the test only edits the config."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deft_jax import cli
from deft_jax.data import schema, tokenizer as tokenizer_lib
from deft_jax.models.experts import registry
from deft_jax.train import state as state_lib


@dataclasses.dataclass(frozen=True)
class BrightnessConfig:
  width: int = 16


class BrightnessExpert(nn.Module):
  """A throwaway expert: each keyframe's mean colour -> one token."""
  config: BrightnessConfig
  dtype: object = jnp.float32
  param_dtype: object = jnp.float32

  @nn.compact
  def __call__(self, keyframes, deterministic=True):
    colour = registry.unit_pixels(keyframes).mean(axis=(2, 3))  # (B, 2, 3)
    return nn.Dense(self.config.width, name="embed")(colour), {}


EXPERT = registry.Expert(reads="keyframes", config_from=lambda node: BrightnessConfig(node.width),
                         module=BrightnessExpert, input_shape=lambda c: (2, 16, 16, 3))


def _model(tmp_path, *overrides):
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny", *overrides])
  with cfg.unlocked():
    cfg.model.experts = (*cfg.model.experts, "brightness")
    cfg.model.brightness = dict(enabled=True, module=__name__, width=16)
  tokenizer_lib.train_tokenizer(tmp_path / "tok", cfg.data.tokenizer_vocab)
  tokenizer = tokenizer_lib.load_tokenizer(tmp_path / "tok")
  return cfg, tokenizer, state_lib.make_model(cfg, tokenizer)


@pytest.mark.slow
def test_a_fourth_expert_joins_the_prefix_between_its_own_markers(tmp_path):
  cfg, tokenizer, model = _model(tmp_path)
  assert model.config.experts == ("structure", "texture", "motion", "brightness")
  open_id, close_id = model.config.markers[-1]
  assert tokenizer.convert_tokens_to_ids("<brightness>") == open_id and open_id != close_id
  assert model.config.llm.vocab_size >= len(tokenizer)  # the markers have embedding rows
  batch = {k: np.asarray(v) for k, v in schema.zeros(model.config, 2, 8).items()}
  batch["keyframes"] = np.random.default_rng(0).integers(0, 256, batch["keyframes"].shape, dtype=np.uint8)
  params = model.init(jax.random.key(0), batch)["params"]
  assert "brightness" in params and "brightness_projector" in params
  prefix, aux = model.apply({"params": params}, batch, method=model.encode)
  assert aux["tokens"]["brightness"].shape == (2, 2, model.config.llm.hidden_size)
  without, _ = model.apply({"params": params}, batch, drop=("brightness",), method=model.encode)
  assert prefix.shape[1] == without.shape[1] + 2 + 2  # two tokens and two markers
  out = model.apply({"params": params}, batch)
  assert out["emotion_logits"].shape == (2, 3) and np.isfinite(np.asarray(out["emotion_logits"])).all()


def test_a_disabled_or_unknown_expert_is_named(tmp_path):
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny"])
  with cfg.unlocked():
    cfg.model.experts = (*cfg.model.experts, "nonesuch")
  with pytest.raises(ValueError, match="no config.model.nonesuch"):
    registry.configured(cfg.model)
  with cfg.unlocked():
    cfg.model.nonesuch = dict(enabled=True, module="deft_jax.no_such_module")
  with pytest.raises(ValueError, match="cannot import expert module 'deft_jax.no_such_module'"):
    registry.configured(cfg.model)
  with cfg.unlocked():
    cfg.model.nonesuch = dict(enabled=True, module="deft_jax.facs.catalogue")
  with pytest.raises(ValueError, match="defines no EXPERT"):
    registry.configured(cfg.model)
  with cfg.unlocked():
    cfg.model.nonesuch.enabled = False
  assert [name for name, _, _ in registry.configured(cfg.model)] == ["structure", "texture", "motion"]


def test_the_batch_schema_follows_the_experts():
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny", "--config.model.texture.enabled=False",
                         "--config.model.motion.flow_size=32"])
  config = state_lib.deft_config(cfg, _Vocab())
  spec = schema.batch_spec(config, 4, 10, targets=True)
  assert "clip" not in spec  # no expert reads it
  assert spec["flow"].shape == (4, 32, 32, 3) and spec["flow"].dtype == np.float32
  assert spec["keyframes"].shape == (4, 2, 64, 64, 3) and spec["keyframes"].dtype == np.uint8
  assert spec["loss_mask"].shape == (4, 10) and spec["label"].shape == (4,)
  assert spec["region_boxes"].shape == (4, 6, 4)  # the motion expert's placed regions
  with pytest.raises(ValueError, match="field 'flow' has shape"):
    schema.conform({"flow": np.zeros((8, 8))}, where="clip 7")


class _Vocab:
  bos_token_id, unk_token_id = 1, None

  def __len__(self):
    return 100

  def convert_tokens_to_ids(self, token):
    return 90 + tokenizer_lib.SPECIAL_TOKENS.index(token) - 4 if token in tokenizer_lib.SPECIAL_TOKENS else None


@pytest.mark.slow
def test_placed_regions_reach_the_motion_expert_when_the_batch_has_them(tmp_path):
  """region_boxes (schema.OPTIONAL) is passed to the experts that list it in `extras`."""
  _, _, model = _model(tmp_path, "--config.model.structure.enabled=False", "--config.model.texture.enabled=False")
  batch = {k: np.asarray(v) for k, v in schema.zeros(model.config, 1, 8).items()}
  batch["flow"] = np.random.default_rng(1).normal(size=batch["flow"].shape).astype(np.float32)
  params = model.init(jax.random.key(0), batch)["params"]
  from deft_jax.facs import regions  # pylint: disable=import-outside-toplevel
  canonical = np.array([list(regions.REGION_BOXES.values())], np.float32)
  tokens = lambda b: np.asarray(model.apply({"params": params}, b, method=model.encode)[1]["tokens"]["motion"])
  np.testing.assert_allclose(tokens({**batch, "region_boxes": canonical}), tokens(batch), atol=1e-5)
  lowered = canonical.copy()
  lowered[..., [1, 3]] += 0.25
  assert np.abs(tokens({**batch, "region_boxes": lowered}) - tokens(batch)).max() > 1e-3
