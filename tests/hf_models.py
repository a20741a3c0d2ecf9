"""Tiny random Hugging Face (transformers) LLMs and inputs: the numerical references the LLM,
LoRA and decoding tests compare deft-jax against."""

import numpy as np
import torch
import transformers

SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2)
VARIANTS = {
    "llama": dict(model_type="llama"),
    "llama3_rope": dict(model_type="llama", rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}),
    "llama_tied": dict(model_type="llama", tie_word_embeddings=True),
    "qwen2": dict(model_type="qwen2"),
    "qwen3": dict(model_type="qwen3", head_dim=32),
}


def hf_model(variant: str, seed: int = 0, **overrides):
  """A tiny random transformers model; weights wider than HF's init so greedy argmax has margins."""
  kwargs = {**SMALL, **VARIANTS[variant], **overrides}
  config = transformers.AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.normal_(0.0, 0.2) if p.ndim > 1 else p.normal_(1.0, 0.1)
  return model


def hf_checkpoint(tmp_path, variant: str, seed: int = 0, **overrides):
  """(torch model, checkpoint dir) saved by transformers' save_pretrained."""
  model = hf_model(variant, seed, **overrides)
  path = tmp_path / variant
  model.save_pretrained(path)
  return model, path


def left_padded(rng: np.random.Generator, batch: int, length: int, vocab: int = 128):
  """Random ids and a mask whose first row is unpadded and the others left-padded."""
  ids = rng.integers(1, vocab, (batch, length))
  mask = np.ones((batch, length), np.int64)
  for row in range(1, batch):
    mask[row, : rng.integers(1, length // 2)] = 0
  return ids * mask, mask


def torch_logits(model, ids, mask):
  with torch.no_grad():
    return model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
