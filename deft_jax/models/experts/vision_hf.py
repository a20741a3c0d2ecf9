"""Local Hugging Face SigLIP / CLIP vision checkpoints -> vit.VisionTransformer params.

A checkpoint is a folder with config.json and model.safetensors, as `save_pretrained` writes
it for SiglipVisionModel / CLIPVisionModel, or for the full SiglipModel / CLIPModel (whose
vision tower is read, the text tower ignored). Keys may carry a "vision_model." prefix
(transformers 4) or none (transformers 5). Nothing is downloaded.
"""

import json
import os

import numpy as np
import safetensors.numpy

from deft_jax.errors import CheckpointError
from deft_jax.models.experts import encoder as encoder_lib
from deft_jax.models.experts import vit

_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu", "quick_gelu": "quick_gelu"}
_ANCHOR = "embeddings.patch_embedding.weight"


def _vision_config(path: str) -> tuple[dict, str]:
  """The vision tower's config dict (defaults filled by transformers) and its family."""
  import transformers  # pylint: disable=import-outside-toplevel
  if not os.path.isfile(os.path.join(path, "config.json")):
    raise CheckpointError(f"{path}: no config.json (expected a local SigLIP or CLIP checkpoint)")
  config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
  config = getattr(config, "vision_config", config)
  family = config.model_type.split("_")[0]
  if family not in ("siglip", "clip"):
    raise CheckpointError(f"{path}: model_type {config.model_type!r}; only SigLIP and CLIP vision towers load")
  return config.to_dict(), family


def vit_config(path: str, image_size: int | None = None) -> vit.ViTConfig:
  """The ViTConfig of a checkpoint, at `image_size` (positions are resized on load)."""
  c, family = _vision_config(os.fspath(path))
  if c["hidden_act"] not in _ACTIVATIONS:
    raise CheckpointError(f"{path}: activation {c['hidden_act']!r} is not supported")
  mean, std = vit.CLIP_PIXELS if family == "clip" else vit.SIGLIP_PIXELS
  pre = os.path.join(os.fspath(path), "preprocessor_config.json")
  if os.path.isfile(pre):
    with open(pre) as f:
      p = json.load(f)
    mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
  enc = encoder_lib.EncoderConfig(width=c["hidden_size"], depth=c["num_hidden_layers"], heads=c["num_attention_heads"],
                                  mlp=c["intermediate_size"], layer_norm_eps=c["layer_norm_eps"],
                                  activation=_ACTIVATIONS[c["hidden_act"]])
  clip = family == "clip"
  return vit.ViTConfig(enc, image_size or c["image_size"], c["patch_size"], class_token=clip, pre_norm=clip,
                       final_norm=not clip, patch_bias=not clip, pixel_mean=mean, pixel_std=std)


def _tensors(path: str) -> dict[str, np.ndarray]:
  file = os.path.join(path, "model.safetensors")
  if not os.path.isfile(file):
    raise CheckpointError(f"{path}: no model.safetensors")
  tensors = safetensors.numpy.load_file(file)
  anchors = [k for k in tensors if k.endswith(_ANCHOR)]
  if len(anchors) != 1:
    raise CheckpointError(f"{file}: expected one '*{_ANCHOR}', found {anchors or 'none'}")
  prefix = anchors[0][: -len(_ANCHOR)]
  return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load(path: str, image_size: int | None = None, dtype=np.float32) -> tuple[vit.ViTConfig, dict]:
  """(config, params) of VisionTransformer from a local checkpoint folder.

  Position embeddings are resized (bicubic) when image_size gives another patch grid.
  Raises CheckpointError naming any tensor the model needs and the file lacks.
  """
  path = os.fspath(path)
  config = vit_config(path, image_size)
  t = _tensors(path)
  params, used = {}, set()

  def take(hf, shape=None):
    if hf not in t:
      raise CheckpointError(f"{path}: model.safetensors lacks {hf!r}")
    used.add(hf)
    value = np.asarray(t[hf], dtype)
    if shape is not None and value.shape != shape:
      raise CheckpointError(f"{path}: {hf} has shape {value.shape}, expected {shape}")
    return value

  def put(ours, value):
    node = params
    *parents, leaf = ours.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value

  def linear(ours, hf):
    put(f"{ours}/kernel", take(f"{hf}.weight").T)
    put(f"{ours}/bias", take(f"{hf}.bias"))

  def norm(ours, hf):
    put(f"{ours}/scale", take(f"{hf}.weight"))
    put(f"{ours}/bias", take(f"{hf}.bias"))

  put("patch_embed/kernel", take(_ANCHOR).transpose(2, 3, 1, 0))  # (D, C, p, p) -> (p, p, C, D)
  if config.patch_bias:
    put("patch_embed/bias", take("embeddings.patch_embedding.bias"))
  if config.class_token:
    put("class_embedding", take("embeddings.class_embedding"))
  put("position_embedding", vit.resize_positions(take("embeddings.position_embedding.weight"),
                                                 config.class_token, config.grid))
  if config.pre_norm:
    norm("pre_layernorm", "pre_layrnorm")
  for i in range(config.encoder.depth):
    ours, hf = f"encoder/layers_{i}", f"encoder.layers.{i}"
    norm(f"{ours}/layer_norm1", f"{hf}.layer_norm1")
    norm(f"{ours}/layer_norm2", f"{hf}.layer_norm2")
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
      linear(f"{ours}/self_attn/{proj}", f"{hf}.self_attn.{proj}")
    linear(f"{ours}/fc1", f"{hf}.mlp.fc1")
    linear(f"{ours}/fc2", f"{hf}.mlp.fc2")
  if config.final_norm:
    norm("encoder/post_layernorm", "post_layernorm")
  unused = sorted(k for k in set(t) - used if not k.startswith(("head.", "post_layernorm.")))
  if unused:
    raise CheckpointError(f"{path}: tensors this ViT has no place for: {unused[:5]}")
  return config, params
