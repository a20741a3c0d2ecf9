"""The main job: DEFT on the built-in synthetic micro-expression data.

    deft-jax train --config configs/synthetic.py --workdir /tmp/deft
    deft-jax train --config configs/synthetic.py:tiny --workdir /tmp/t --config.train.steps=5

Variants (the text after the colon): "" (default, about 5 minutes on a 2-core CPU) and
"tiny" (seconds; for tests). The LLM here is initialised at random from `model.llm`, so its
embeddings and output head train along with LoRA; with real weights (`model.llm_path`)
freeze them too by widening `optim.frozen`.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "default"
  if variant not in ("default", "tiny"):
    raise ValueError(f"configs/synthetic.py: unknown variant {variant!r}; use 'default' or 'tiny'")
  tiny = variant == "tiny"
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = dict(
      name="synthetic_me/tiny" if tiny else "synthetic_me/small",
      data_dir="",  # "" -> $TFDS_DATA_DIR or ~/tensorflow_datasets
      manual_dir="",
      train_split="train",
      test_split="test",
      scheme="composite",
      max_text_len=104,
      tokenizer="",  # a local HF tokenizer folder; "" -> train one into WORKDIR/tokenizer
      tokenizer_vocab=1024,
      # Where the answer text comes from: "labels" (the written AUs) or "uni_mer" (the flow-
      # confirmed pairs of a uni_mer/* dataset, e.g. data.name=uni_mer/synthetic_small).
      answers="labels",
      # LOSO: subjects held out for testing; then both splits pool into one set of records
      # (train_split + test_split) and training uses every other subject.
      holdout_subjects=(),
      # Photometric jitter of training clips, one draw per clip (deft_jax/data/augment.py); 0: off.
      augment=dict(brightness=0.0, contrast=0.0, colour=0.0, grayscale=0.0),
  )

  encoder = lambda width, depth: dict(width=width, depth=depth, heads=4, mlp=2 * width, dropout=0.0)
  w = 32 if tiny else 64
  c.model = dict(
      # The experts, in the order their tokens enter the LLM; each has a node below (enabled, and
      # optionally module: the import path of a module defining EXPERT; default
      # deft_jax.models.experts.<name>). See deft_jax/models/experts/registry.py.
      experts=("structure", "texture", "motion"),
      # checkpoint: a local SigLIP/CLIP vision folder (it then sets width, depth and patch);
      # the texture expert inflates its 2-D patches over time ("average" or "central").
      structure=dict(enabled=True, image_size=64, patch=16, encoder=encoder(w, 1), checkpoint=""),
      texture=dict(enabled=True, image_size=64, num_frames=8, tubelet=(2, 16, 16), encoder=encoder(w, 1),
                   attention="joint", checkpoint="", inflation="average"),  # attention: joint | factorised
      motion=dict(enabled=True, flow_size=64, patch=8, flow_scale=1.0, encoder=encoder(w, 1 if tiny else 2),
                  pooling="mean"),  # region tokens: mean | attention
      projector_hidden=0,
      llm_path="",  # a local HF checkpoint folder; "" -> random init from `llm` below
      llm=dict(
          model_type="llama",
          hidden_size=64 if tiny else 128,
          intermediate_size=128 if tiny else 256,
          num_hidden_layers=1 if tiny else 2,
          num_attention_heads=4,
          num_key_value_heads=2,
          rms_norm_eps=1e-6,
          rope_theta=10000.0,
          tie_word_embeddings=True,
      ),
      lora=dict(enabled=True, rank=8, alpha=16.0, dropout=0.0,
                targets=r".*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"),
      dtype="float32",
      param_dtype="float32",
      trainable_dtype="",  # trainable weights (and their Adam moments) in this dtype; "": param_dtype
      remat="none",  # per LLM layer, what the backward pass keeps: none | full | dots | dots_all | everything
      scan_layers=True,  # the LLM's layers as one nn.scan (parameters stacked under llm/layers/)
  )

  # Hybrid objective (DEFT: discriminative + generative terms): weights of each term; 0 switches a term off.
  c.loss = dict(lm=1.0, emotion=1.0, au=0.5, decorrelation=0.0)

  c.optim = dict(
      learning_rate=2e-3,
      warmup_steps=20,
      weight_decay=1e-4,
      grad_clip=1.0,
      # Parameters whose path matches any of these stay exactly as initialised.
      frozen=(r"^llm/layers(_\d+)?/(?!.*lora_).*",),
  )

  c.train = dict(
      batch_size=16 if tiny else 32,
      steps=4 if tiny else 300,
      log_every=2 if tiny else 25,
      checkpoint_every=4 if tiny else 100,
      keep_checkpoints=2,
      init_from="",  # a stage-1 workdir or checkpoint step folder: params of matching paths start there
      grad_accum_steps=1,  # batch_size is split into this many micro-batches, gradients summed
      eval_batch_size=32,
      expert_contributions=True,  # score the test set again without each expert (results["experts"])
      generate_examples=1,  # test clips to answer (WORKDIR/answers.jsonl, results["answers"]); -1: all, 0: none
      max_new_tokens=16 if tiny else 80,
  )

  # Multi-host (deft_jax/train/distributed.py): set coordinator_address (or JAX_COORDINATOR_ADDRESS,
  # JAX_NUM_PROCESSES, JAX_PROCESS_ID), or auto_detect on TPU pods, SLURM and Open MPI.
  c.distributed = dict(coordinator_address="", num_processes=0, process_id=-1, auto_detect=False)

  # Device mesh: -1 takes the devices left over. Logical axis -> mesh axes, for every model part.
  c.mesh = dict(data=-1, fsdp=1, tensor=1)
  c.sharding_rules = (
      ("batch", ("data", "fsdp")),
      ("vocab", "tensor"),
      ("embed", "fsdp"),
      ("mlp", "tensor"),
      ("heads", "tensor"),
      ("kv_heads", "tensor"),
      ("head_dim", None),
      ("norm", None),
      ("lora_rank", None),
      ("layers", None),  # the scanned LLM's stacked layer axis
  )
  c.lock()
  return c
