"""The batch: one definition of its fields, read by the pipeline, init, the AOT plan and predict.

Inputs are what experts read; which ones a model needs, and at what size, comes from its
experts (models/experts/registry.py: several experts reading one key share the largest size,
and each resizes to its own). Text and targets have fixed layouts. Pixels stay uint8 until an
expert reads them, and are scaled once there (registry.unit_pixels).
"""

import jax
import numpy as np

from deft_jax.facs import catalogue, regions

# field: (dtype, per-example layout)
INPUTS = {
    "keyframes": (np.uint8, "(2, S, S, 3): onset and apex frames"),
    "clip": (np.uint8, "(T, S, S, 3): frames from onset to offset"),
    "flow": (np.float32, "(F, F, 3): onset->apex u, v (pixels) and optical strain"),
}
# Inputs an expert reads when the batch has them (registry.Expert.extras): regions placed on
# the face by its landmarks, canonical x0, y0, x1, y1 in catalogue.REGIONS order.
OPTIONAL = {"region_boxes": np.float32}
OPTIONAL_SHAPES = {"region_boxes": (len(catalogue.REGIONS), 4)}
TEXT = {"text_ids": np.int32, "text_mask": np.int32, "prompt_len": np.int32}
TARGETS = {"aus": np.float32, "label": np.int32, "loss_mask": np.float32}


def _fixed_shapes(text_len: int, targets: bool) -> dict:
  shapes = {"text_ids": (text_len,), "text_mask": (text_len,), "prompt_len": ()}
  if targets:
    shapes.update(aus=(catalogue.NUM_AUS,), label=(), loss_mask=(text_len,))
  return shapes


def input_shapes(model_config) -> dict[str, tuple[int, ...]]:
  """Per-example shape of each input the model's experts read (the largest where they share one)."""
  shapes = {}
  for _, spec, cfg in model_config.expert_specs:
    shape = tuple(spec.input_shape(cfg))
    old = shapes.get(spec.reads)
    shapes[spec.reads] = shape if old is None else tuple(max(a, b) for a, b in zip(old, shape))
  return shapes


def example_spec(model_config, text_len: int, targets: bool = False) -> dict[str, tuple[tuple[int, ...], type]]:
  """{field: (per-example shape, dtype)}: the model's inputs and text (and training targets)."""
  spec = {k: (shape, INPUTS[k][0]) for k, shape in input_shapes(model_config).items()}
  extras = {k for _, expert, _ in model_config.expert_specs for k in expert.extras}
  spec.update({k: (OPTIONAL_SHAPES[k], OPTIONAL[k]) for k in sorted(extras)})
  dtypes = {**TEXT, **TARGETS}
  spec.update({k: (shape, dtypes[k]) for k, shape in _fixed_shapes(text_len, targets).items()})
  return spec


def batch_spec(model_config, batch_size: int, text_len: int, targets: bool = False) -> dict:
  """{field: jax.ShapeDtypeStruct} of a batch of `batch_size` examples."""
  return {k: jax.ShapeDtypeStruct((batch_size,) + shape, dtype)
          for k, (shape, dtype) in example_spec(model_config, text_len, targets).items()}


def zeros(model_config, batch_size: int, text_len: int) -> dict:
  """A host batch of zeros (prompt lengths 1): what init and shape-only compiles read."""
  out = {k: np.zeros(v.shape, v.dtype) for k, v in batch_spec(model_config, batch_size, text_len).items()}
  out["text_mask"][:] = 1
  out["prompt_len"][:] = 1
  if "region_boxes" in out:
    out["region_boxes"][:] = [regions.REGION_BOXES[r] for r in catalogue.REGIONS]
  return out


def conform(example: dict, where: str = "example") -> dict:
  """`example` with each known field in its dtype; names a field whose rank is not the schema's
  (spatial sizes may differ from the model's: experts resize)."""
  out = dict(example)
  ranks = {"keyframes": 4, "clip": 4, "flow": 3}
  for key, dtype in {**{k: v[0] for k, v in INPUTS.items()}, **OPTIONAL, **TEXT, **TARGETS}.items():
    if key not in out:
      continue
    if key in ranks and np.ndim(out[key]) != ranks[key]:
      raise ValueError(f"{where}: field {key!r} has shape {np.shape(out[key])}; expected {INPUTS[key][1]}")
    out[key] = np.asarray(out[key], dtype)
  return out
