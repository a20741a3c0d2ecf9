"""Ahead-of-time compilation of the train step for a named topology, from shapes alone.

    deft-jax aot --topology 8xh100 --model qwen2.5-7b [--batch 16] [--mesh data=1,fsdp=8,tensor=1]

Plans a run before paying for it: the train step (DEFT with the default experts of
configs/synthetic.py, LoRA, a frozen bf16 LLM of a published size, sequence 1024) is lowered on
abstract shapes and compiled for the topology's compile-only devices; nothing is allocated and
no weights are read. It prints the compiled program's per-device memory (memory_analysis) as
one JSON line.

Compiling for hardware that is not here needs that hardware's compiler plugin, outside the
project's environment (loading them slows every JAX import down):
    pip install --target ~/aot-deps "libtpu==0.0.42.*" "jax-cuda12-plugin==0.10.2" "jax-cuda12-pjrt==0.10.2"
    PYTHONPATH=~/aot-deps deft-jax aot ...
Without the plugin the command stops and names the plugin and this install command. With
--cpu the same program is compiled for as many fake CPU devices with the same mesh, and the
output says so ("platform": "cpu", and a warning on stderr): CPU figures come from the CPU
compiler's buffer assignment and fusion, not the accelerator's, and are several times larger
(Qwen2.5-7B on 8xh100: 92.44 GiB per device on the CPU compiler, 12.22 GiB on the GPU one).
"""

import dataclasses
import json
import math
import sys
import time

import jax

from configs import aot_cards
from deft_jax.data import schema
from deft_jax.models import deft, llm as llm_lib
from deft_jax.train import sharding, state as state_lib, step as step_lib

@dataclasses.dataclass(frozen=True)
class Topology:
  platform: str  # "cuda" | "tpu"
  name: str  # the PJRT topology name
  devices: int
  memory_bytes: int  # per device
  mesh: dict  # default (data, fsdp, tensor)
  batch: int  # default global batch
  options: tuple = ()  # extra get_topology_desc keyword arguments
  compiler_options: tuple = ()  # XLA debug options for this platform's compiler


def _topologies() -> dict[str, Topology]:
  return {name: Topology(**{k: tuple(v.items()) if k in ("options", "compiler_options") else v
                            for k, v in card.items()}) for name, card in aot_cards.TOPOLOGIES.items()}


GiB = aot_cards.GiB
TOPOLOGIES = _topologies()
MODELS = aot_cards.MODELS  # published config.json values


class AotError(ValueError):
  pass


# The compiler plugin each platform needs, as pip installs it beside this JAX.
PLUGINS = {"cuda": ("jax-cuda12-plugin", "jax-cuda12-pjrt"), "tpu": ("libtpu",)}


def install_command() -> str:
  """The pip command that puts every platform's compiler plugin aside (see docs/SCALING.md)."""
  return (f'pip install --target ~/aot-deps "libtpu==0.0.42.*" "jax-cuda12-plugin=={jax.__version__}" '
          f'"jax-cuda12-pjrt=={jax.__version__}"')


def missing_plugin(topology: "Topology", error: Exception) -> AotError:
  """The refusal when `topology`'s compiler cannot be loaded: which plugin, how to install it."""
  return AotError(
      f"{topology.name} needs the {topology.platform} compiler plugin ({' + '.join(PLUGINS[topology.platform])}), "
      f"which this environment lacks ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
      f"install it with `{install_command()}` and run with PYTHONPATH=~/aot-deps, or pass --cpu for "
      "figures from the CPU compiler (not the accelerator's: several times larger)")


class _Vocabulary:
  """What state.deft_config reads of a tokenizer: its size, BOS and the expert markers' ids
  (here the vocabulary's last ids, as added special tokens would be)."""

  def __init__(self, size: int, bos_id: int):
    self.bos_token_id, self._size, self._ids = bos_id, size, {}
    self.unk_token_id = -1  # every marker has an id

  def __len__(self):
    return self._size

  def convert_tokens_to_ids(self, token: str) -> int:
    return self._ids.setdefault(token, self._size - 1 - len(self._ids))


def plan_config(cfg, seq_len: int, prefix_len: int):
  """`cfg` as a fine-tuning run on a real LLM: bf16 frozen base, float32 LoRA/projectors/heads
  (and Adam moments), every layer rematerialised, text filling the sequence after the prefix."""
  cfg = cfg.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.model.update(dtype="bfloat16", param_dtype="bfloat16", trainable_dtype="float32", remat="full")
    cfg.optim.frozen = (r"^llm/(?!.*lora_).*",)
    cfg.data.max_text_len = seq_len - prefix_len
  return cfg


def devices_for(topology: Topology, force_cpu: bool):
  """(devices, platform, why the CPU stands in or None); refuses when the plugin is missing
  and --cpu was not asked for (a CPU figure must never pass for the accelerator's)."""
  reason = "--cpu" if force_cpu else None
  if not force_cpu:
    from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
    try:
      desc = topologies.get_topology_desc(topology.name, topology.platform, **dict(topology.options))
      return list(desc.devices), topology.platform, None
    except Exception as e:  # pylint: disable=broad-except  # no plugin: RuntimeError, NotImplementedError, ...
      raise missing_plugin(topology, e) from None
  try:
    jax.config.update("jax_num_cpu_devices", topology.devices)
  except RuntimeError:
    pass  # the CPU backend already exists; use it if it has enough devices
  cpus = jax.devices("cpu")
  if len(cpus) < topology.devices:
    raise AotError(f"fake CPU stand-in for {topology.name} needs {topology.devices} devices, this process has "
                   f"{len(cpus)} (start it with --xla_force_host_platform_device_count={topology.devices})")
  return cpus[:topology.devices], "cpu", reason


def abstract_batch(config: deft.DeftConfig, batch: int, text_len: int, mesh, rules) -> dict:
  """ShapeDtypeStructs of one global training batch, split on "batch"."""
  shapes = schema.batch_spec(config, batch, text_len, targets=True)
  s = sharding.batch_sharding(mesh, rules)
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s) for k, v in shapes.items()}


def prefix_length(config: deft.DeftConfig) -> int:
  """Tokens before the text: BOS, then each expert's tokens between its two markers."""
  model = deft.DeftModel(config)
  batch = deft.init_batch(config, 1, 1)
  prefix = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), batch, method="encode")[0][0])
  return prefix.shape[1]


def compile_step(cfg, topology_name: str, model_name: str, *, batch: int | None = None, mesh_sizes=None,
                 seq_len: int = 1024, force_cpu: bool = False) -> dict:
  """Compiles the train step for a named topology and returns its per-device memory and setting.

  `model_name` is a key of MODELS, or "config" for the LLM `cfg` describes.
  """
  if topology_name not in TOPOLOGIES:
    raise AotError(f"unknown topology {topology_name!r}; use one of {sorted(TOPOLOGIES)}")
  topology = TOPOLOGIES[topology_name]
  if model_name not in MODELS and model_name != "config":
    raise AotError(f"unknown model {model_name!r}; use one of {sorted(MODELS) + ['config']}")
  devices, platform, reason = devices_for(topology, force_cpu)
  mesh_sizes = dict(mesh_sizes or topology.mesh)
  mesh = sharding.make_mesh(mesh_sizes, devices=devices)
  batch = batch or topology.batch
  llm = llm_lib.LlmConfig.from_hf(MODELS[model_name]) if model_name in MODELS else None
  vocab = _Vocabulary(llm.vocab_size, llm.bos_token_id) if llm else _Vocabulary(cfg.data.tokenizer_vocab, 1)
  cfg = plan_config(cfg, seq_len, prefix_length(state_lib.deft_config(cfg, vocab, llm)))
  model = state_lib.make_model(cfg, vocab, llm)
  rules = sharding.rules(cfg)
  abstract, shardings, _ = state_lib.abstract_state(cfg, model, mesh, 1000)
  train_step = step_lib.make_train_step(model, dict(cfg.loss), shardings, mesh, rules=rules,
                                        grad_accum_steps=cfg.train.grad_accum_steps)
  rng = jax.eval_shape(lambda: jax.random.key(0))
  rng = jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=jax.NamedSharding(mesh, jax.P()))
  start = time.time()
  lowered = train_step.lower(abstract, abstract_batch(model.config, batch, cfg.data.max_text_len, mesh, rules), rng)
  compiled = lowered.compile(dict(topology.compiler_options) if platform == topology.platform else None)
  seconds = time.time() - start
  mem = compiled.memory_analysis()
  trainable = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params))
  params = trainable + sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.frozen))
  peak = mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes + mem.temp_size_in_bytes
  return {
      "topology": topology_name, "platform": platform,
      "cpu_stand_in_because": reason, "devices": len(devices), "model": model_name, "mesh": mesh_sizes,
      "global_batch": batch, "sequence": seq_len, "text_len": cfg.data.max_text_len,
      "params": params, "trainable_params": trainable, "compile_seconds": round(seconds, 1),
      "per_device_bytes": {"arguments": mem.argument_size_in_bytes, "outputs": mem.output_size_in_bytes,
                           "aliased": mem.alias_size_in_bytes, "temps": mem.temp_size_in_bytes, "peak": peak},
      "device_memory_bytes": topology.memory_bytes, "fits": peak <= topology.memory_bytes,
  }


def parse_mesh(text: str | None) -> dict | None:
  """"data=1,fsdp=8,tensor=1" -> {"data": 1, "fsdp": 8, "tensor": 1}."""
  if not text:
    return None
  try:
    sizes = {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(","))}
  except ValueError:
    raise AotError(f"--mesh {text!r}: expected data=N,fsdp=N,tensor=N") from None
  if set(sizes) != set(sharding.MESH_AXES):
    raise AotError(f"--mesh {text!r}: name each of {', '.join(sharding.MESH_AXES)} once")
  return sizes


def format_table(result: dict) -> str:
  b = result["per_device_bytes"]
  gib = lambda x: f"{x / GiB:.2f} GiB"
  return (f"{result['topology']} ({result['platform']}, {result['devices']} devices, mesh {result['mesh']}) "
          f"{result['model']} batch {result['global_batch']} x {result['sequence']}: per device arguments "
          f"{gib(b['arguments'])}, outputs {gib(b['outputs'])} (aliased {gib(b['aliased'])}), temps "
          f"{gib(b['temps'])}, peak {gib(b['peak'])} of {gib(result['device_memory_bytes'])}"
          + (f"  [CPU stand-in: {result['cpu_stand_in_because']}]" if result["platform"] == "cpu" else ""))


def print_result(result: dict) -> None:
  if result["platform"] == "cpu":
    target = TOPOLOGIES[result["topology"]].platform
    print(f"warning: these figures come from the CPU compiler standing in for {result['topology']}, not from the "
          f"{target} compiler; they can be several times the real ones ({' + '.join(PLUGINS[target])} gives those)",
          file=sys.stderr)
  print(format_table(result))
  print(json.dumps(result))

