"""Parameter paths of a scanned layer stack and the per-layer names they stand for.

A scanned decoder (llm.DecoderLM with scan_layers) keeps layer i's weights at index i of one
stacked leaf, "layers/mlp/up_proj/kernel"; the unscanned model, Hugging Face and peft name it
"layers_{i}/mlp/up_proj/kernel" ("model.layers.{i}.mlp.up_proj.weight"). Loading, export and
adapters go through the per-layer names.
"""

import re
from typing import Any

_SCANNED = re.compile(r"(^|/)layers/")


def is_scanned(path: str) -> bool:
  """A leaf or module of the scanned stack ("layers/...", possibly under a prefix such as "llm/")."""
  return _SCANNED.search(path + "/") is not None


def layer_path(path: str, i: int) -> str:
  """"llm/layers/mlp/up_proj/kernel" -> "llm/layers_{i}/mlp/up_proj/kernel"."""
  return _SCANNED.sub(lambda m: f"{m.group(1)}layers_{i}/", path + "/", count=1)[:-1]


def unstack(flat: dict[str, Any]) -> dict[str, Any]:
  """Flat {path: array}: every scanned leaf (L, ...) split into its L per-layer leaves, named as
  the unscanned model names them; other leaves pass through."""
  out = {}
  for path, value in flat.items():
    if is_scanned(path):
      out.update({layer_path(path, i): value[i] for i in range(value.shape[0])})
    else:
      out[path] = value
  return out
