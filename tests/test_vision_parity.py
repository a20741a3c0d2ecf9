"""SigLIP and CLIP vision towers: local HF checkpoints load into vit.VisionTransformer with
the PyTorch models' numbers."""

import jax
import numpy as np
import pytest
import torch
import transformers

from deft_jax.models.experts import vision_hf, vit

_SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8)


def _checkpoint(tmp_path, family):
  torch.manual_seed(int(np.random.default_rng(1).integers(1 << 30)))
  if family == "siglip":
    model = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**_SIZES))
  else:
    model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**_SIZES))
  with torch.no_grad():  # HF inits LayerNorms to (1, 0) and some biases to 0: perturb all
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.eval().save_pretrained(tmp_path / family)
  return model, tmp_path / family


@pytest.mark.parametrize("family", ["siglip", "clip"])
def test_last_hidden_state_matches_transformers(tmp_path, family):
  model, path = _checkpoint(tmp_path, family)
  config, params = vision_hf.load(path)
  assert config.class_token == (family == "clip") and config.final_norm == (family == "siglip")
  pixels = np.random.default_rng(2).normal(size=(2, 3, 32, 32)).astype(np.float32)
  with torch.no_grad():
    want = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
  got = vit.VisionTransformer(config).apply({"params": params}, pixels.transpose(0, 2, 3, 1))
  assert got.shape == want.shape == (2, 16 + (family == "clip"), 32)
  err = float(np.abs(np.asarray(got) - want).max())
  print(f"{family} max abs error {err:.2e}")
  assert err < 1e-4


def test_params_match_the_module_tree_and_resize(tmp_path):
  _, path = _checkpoint(tmp_path, "clip")
  config, params = vision_hf.load(path, image_size=48)  # 6 x 6 patches instead of 4 x 4
  abstract = jax.eval_shape(vit.VisionTransformer(config).init, jax.random.key(0), np.zeros((1, 48, 48, 3)))
  shapes = jax.tree.map(lambda x: x.shape, jax.tree.map(lambda x: getattr(x, "value", x), abstract["params"],
                                                        is_leaf=lambda x: hasattr(x, "value")))
  assert shapes == jax.tree.map(lambda x: x.shape, params)
  assert params["position_embedding"].shape == (37, 32)


def test_not_a_vision_checkpoint(tmp_path):
  with pytest.raises(vision_hf.CheckpointError, match="config.json"):
    vision_hf.load(tmp_path)
