"""`deft-jax aot`: the train step compiled from shapes alone, and the precision plan it compiles."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import train_runs
from deft_jax import cli
from deft_jax.data import pipeline, tokenizer as tokenizer_lib
from deft_jax.train import aot, sharding, state as state_lib, step as step_lib


@pytest.mark.slow
def test_aot_compiles_the_plan_for_8_devices_from_shapes(capsys):
  # The tiny LLM on 8 fake CPU devices (the 8xh100 mesh); real sizes are docs/SCALING.md's.
  code = cli.main(["aot", "--topology", "8xh100", "--model", "config", "--cpu", "--seq", "128",
                   "--batch", "8", "--config", "configs/synthetic.py:tiny"])
  out = capsys.readouterr().out.strip().splitlines()
  assert code == 0, out
  result = json.loads(out[-1])
  assert result["platform"] == "cpu" and result["cpu_stand_in_because"] == "--cpu"
  assert result["devices"] == 8 and result["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
  assert result["sequence"] == 128 and result["global_batch"] == 8
  b = result["per_device_bytes"]
  assert b["arguments"] > 0 and b["temps"] > 0 and b["peak"] >= b["arguments"] and result["fits"]
  assert 0 < result["trainable_params"] < result["params"]
  assert out[0].startswith("8xh100 (cpu, 8 devices") and "CPU stand-in" in out[0]


@pytest.mark.parametrize("args, message", [
    (["--topology", "v6e-9999", "--model", "qwen2.5-7b"], "unknown topology"),
    (["--topology", "8xh100", "--model", "gpt-5"], "unknown model"),
    (["--topology", "8xh100", "--model", "qwen2.5-7b", "--mesh", "data=2"], "--mesh"),
])
def test_aot_bad_arguments_are_named(args, message, capsys):
  assert cli.main(["aot", *args, "--cpu"]) == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_planned_precision_policy_trains(tmp_path_factory, synthetic_tiny):
  """bf16 compute and frozen base, float32 trainable weights, remat: two real steps."""
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny"])
  tok = tokenizer_lib.load_tokenizer(train_runs.tokenizer(tmp_path_factory))
  cfg = aot.plan_config(cfg, seq_len=61 + cfg.data.max_text_len, prefix_len=61)
  model = state_lib.make_model(cfg, tok)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  state, shardings = state_lib.create_state(cfg, model, mesh, 10, jax.random.key(0))
  flat = lambda tree: traverse_util.flatten_dict(tree, sep="/")
  before = {k: np.asarray(v.astype(jnp.float32)) for k, v in flat(state_lib.all_params(state)).items()}
  dtypes = {k: v.dtype for k, v in flat(state_lib.all_params(state)).items()}
  assert dtypes["llm/layers/self_attn/q_proj/kernel"] == jnp.bfloat16
  assert dtypes["llm/layers/self_attn/q_proj/lora_a"] == jnp.float32 == dtypes["emotion_head/kernel"]
  pre = pipeline.Preprocess(tok, cfg.data.scheme, cfg.data.max_text_len, train=True)
  batch = next(iter(pipeline.dataset(synthetic_tiny.as_data_source()["train"], pre, 4, seed=0, train=True)))
  train_step = step_lib.make_train_step(model, dict(cfg.loss), shardings, mesh)
  losses = []
  for i in range(2):
    state, m = train_step(state, sharding.global_batch(batch, mesh), jax.random.key(i))
    losses.append(float(m["loss"]))
  assert np.all(np.isfinite(losses))
  after = flat(state_lib.all_params(state))
  assert {k: v.dtype for k, v in after.items()} == dtypes
  np.testing.assert_array_equal(before["llm/layers/mlp/up_proj/kernel"],
                                np.asarray(after["llm/layers/mlp/up_proj/kernel"].astype(jnp.float32)))
  assert not np.array_equal(before["llm/layers/mlp/up_proj/lora_b"], np.asarray(after["llm/layers/mlp/up_proj/lora_b"]))


def test_aot_without_the_plugin_refuses_naming_it(monkeypatch, capsys):
  """The README's command without the CUDA plugin: it stopped being a silent CPU figure (issue 15.5)."""
  from jax.experimental import topologies

  def absent(*args, **kwargs):
    raise NotImplementedError("topology not implemented for cuda")

  monkeypatch.setattr(topologies, "get_topology_desc", absent)
  assert cli.main(["aot", "--topology", "8xh100", "--model", "qwen2.5-7b"]) == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert "needs the cuda compiler plugin (jax-cuda12-plugin + jax-cuda12-pjrt)" in line
  assert f'pip install --target ~/aot-deps "libtpu==0.0.42.*" "jax-cuda12-plugin=={jax.__version__}"' in line
  assert "--cpu" in line


def test_aot_cli_in_a_fresh_process_refuses_without_the_plugin():
  import importlib.util
  import os
  import subprocess
  import sys
  if importlib.util.find_spec("jax_cuda12_plugin"):
    pytest.skip("the CUDA plugin is installed here")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-m", "deft_jax.cli", "aot", "--topology", "8xh100", "--model", "qwen2.5-7b"],
                       capture_output=True, text=True, cwd=root, timeout=120,
                       env={**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 2 and not out.stdout, out.stdout
  assert len(out.stderr.strip().splitlines()) == 1 and "jax-cuda12-plugin" in out.stderr, out.stderr


def test_cpu_figures_carry_a_warning(capsys):
  result = {"topology": "8xh100", "platform": "cpu", "devices": 8, "mesh": {}, "model": "m", "global_batch": 1,
            "sequence": 8, "cpu_stand_in_because": "--cpu", "device_memory_bytes": 1 << 30,
            "per_device_bytes": {k: 1 for k in ("arguments", "outputs", "aliased", "temps", "peak")}}
  aot.print_result(result)
  err = capsys.readouterr().err
  assert "warning: these figures come from the CPU compiler standing in for 8xh100" in err
