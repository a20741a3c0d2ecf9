"""The three experts: inflation from an image ViT, factorised attention, region tokens, and the
FACS words and regions they are built on."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest
import transformers

from deft_jax.data import answers
from deft_jax.facs import catalogue, emotions, regions, words
from deft_jax.models.experts import encoder, motion, structure, texture, vision_hf, vit

_ENC = encoder.EncoderConfig(width=32, depth=1, heads=4, mlp=64)


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
  path = tmp_path_factory.mktemp("siglip")
  config = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=4, image_size=32, patch_size=8)
  transformers.SiglipVisionModel(config).save_pretrained(path)
  return path


def _unbox(tree):
  return jax.tree.map(lambda x: getattr(x, "value", x), tree, is_leaf=lambda x: hasattr(x, "value"))


@pytest.mark.parametrize("method", texture.INFLATIONS)
def test_inflated_tubelets_embed_a_static_clip_as_the_image(siglip, method):
  tower, image_params = vision_hf.load(siglip)
  cfg = texture.TextureConfig(dataclasses.replace(tower, class_token=False), num_frames=4, tubelet_frames=2,
                              attention="factorised", checkpoint=str(siglip), inflation=method)
  model = texture.TextureExpert(cfg)
  params = _unbox(model.init(jax.random.key(0), np.zeros((1, 4, 32, 32, 3), np.float32))["params"])
  inflated = texture.inflate(image_params, cfg)
  params = {**params, **{k: v for k, v in inflated.items() if k != "encoder"}}
  image = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  clip = np.repeat(image[:, None], 4, axis=1)
  tubelets = model.apply({"params": params}, clip, method=texture.TextureExpert.embed_tubelets)
  patches = vit.VisionTransformer(tower).apply({"params": image_params}, image,
                                               method=lambda m, x: m.patch_embed(x))
  assert tubelets.shape == (2, 2, 4, 4, 32)
  for t in range(2):
    np.testing.assert_allclose(np.asarray(tubelets[:, t]), np.asarray(patches), atol=1e-5)
  # The inflated tree fits the module: every copied encoder leaf has its place and shape.
  target = jax.tree_util.tree_flatten_with_path(params["encoder"])[0]
  shapes = {jax.tree_util.keystr(k): v.shape for k, v in target}
  for k, v in jax.tree_util.tree_flatten_with_path(inflated["encoder"])[0]:
    assert shapes[jax.tree_util.keystr(k)] == v.shape


def test_factorised_texture_starts_as_the_image_model_per_frame():
  """Temporal attention starts at zero: frames do not mix at init, as in ViViT's init."""
  cfg = texture.TextureConfig(vit.ViTConfig(_ENC, 32, 8), num_frames=4, tubelet_frames=1, attention="factorised")
  model = texture.TextureExpert(cfg)
  clip = np.random.default_rng(0).uniform(0, 1, (1, 4, 32, 32, 3)).astype(np.float32)
  params = _unbox(model.init(jax.random.key(1), clip, method=texture.TextureExpert.encode)["params"])
  assert "temporal_attn" in params["encoder"]["layers_0"]
  out = model.apply({"params": params}, clip, method=texture.TextureExpert.encode)
  changed = clip.copy()
  changed[:, 1:] = 0.0  # change every frame but the first
  assert out.shape == (1, 16, 32)
  # With time mixing off, frame 0's tokens do not depend on the other frames.
  a = model.apply({"params": params}, clip, method=lambda m, x: m.encoder(
      (m.embed_tubelets(vit.normalise(x, cfg.vit)) + m.space_embedding + m.time_embedding).reshape(1, 4, 16, 32)))
  b = model.apply({"params": params}, changed, method=lambda m, x: m.encoder(
      (m.embed_tubelets(vit.normalise(x, cfg.vit)) + m.space_embedding + m.time_embedding).reshape(1, 4, 16, 32)))
  np.testing.assert_allclose(np.asarray(a[:, 0]), np.asarray(b[:, 0]), atol=1e-5)


def test_structure_expert_on_one_frame_is_the_checkpoint_vit(siglip):
  tower, image_params = vision_hf.load(siglip)
  cfg = structure.StructureConfig(tower, str(siglip))
  model = structure.StructureExpert(cfg)
  frames = np.random.default_rng(0).integers(0, 256, (2, 1, 32, 32, 3), dtype=np.uint8)
  params = {"vit": image_params, "frame_embedding": np.zeros((1, 1, 1, 32), np.float32)}
  got, aux = model.apply({"params": params}, frames)
  # uint8 pixels are scaled once, to [0, 1], then normalised as the checkpoint expects.
  want = vit.VisionTransformer(tower).apply({"params": image_params},
                                            vit.normalise(frames[:, 0].astype(np.float32) / 255, tower))
  assert aux == {}
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


@pytest.mark.parametrize("pooling", motion.POOLINGS)
def test_motion_expert_gives_one_token_per_region(pooling):
  cfg = motion.MotionConfig(_ENC, flow_size=32, patch=8, pooling=pooling)
  flow = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  model = motion.MotionExpert(cfg)
  params = model.init(jax.random.key(0), flow)
  tokens, aux = model.apply(params, flow)
  au_logits = aux["au_logits"]
  assert tokens.shape == (2, len(catalogue.REGIONS), 32) and au_logits.shape == (2, catalogue.NUM_AUS)
  w = motion.region_weights(64, 8)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
  nose = w[catalogue.REGIONS.index("nose")].reshape(8, 8)
  assert nose[:, :3].sum() == 0 and nose[:, 5:].sum() == 0  # the nose box is central


def test_streams_stem_is_ststnets_trunk_per_patch():
  """The "streams" stem: parallel 3x3 convolutions (ReLU), concatenated and max-pooled over each
  patch (STSTNet's trunk), then one token per patch; checked against flax's own conv and pool."""
  cfg = motion.MotionConfig(_ENC, flow_size=28, patch=4, stem="streams", stem_filters=(3, 5, 8))
  flow = np.random.default_rng(1).normal(size=(2, 28, 28, 3)).astype(np.float32)
  model = motion.MotionExpert(cfg)
  variables = model.init(jax.random.key(0), flow)
  (tokens, _), state = model.apply(variables, flow, capture_intermediates=True)
  assert tokens.shape == (2, len(catalogue.REGIONS), 32)
  p = nn.meta.unbox(variables["params"])
  streams = [nn.relu(nn.Conv(f, (3, 3), padding=1).apply({"params": p[f"stem_conv{i}"]}, flow))
             for i, f in enumerate((3, 5, 8))]
  pooled = nn.max_pool(np.concatenate(streams, -1), (4, 4), (4, 4))
  want = pooled @ p["patch_embed"]["kernel"].reshape(16, 32) + p["patch_embed"]["bias"]
  got = state["intermediates"]["patch_embed"]["__call__"][0]
  assert got.shape == (2, 7, 7, 32)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="does not split into 5 px patches"):
    motion.MotionExpert(dataclasses.replace(cfg, patch=5)).init(jax.random.key(0), flow)


@pytest.mark.parametrize("count", [1, 3])
def test_summary_tokens_project_the_whole_stem_map(count):
  """The summary tokens read the whole stem map, after the region tokens, each its own slice of
  one projection; the AU head reads the region tokens alone."""
  cfg = motion.MotionConfig(_ENC, flow_size=28, patch=4, stem="streams", summary_tokens=count)
  flow = np.random.default_rng(count).normal(size=(2, 28, 28, 3)).astype(np.float32)
  model = motion.MotionExpert(cfg)
  variables = model.init(jax.random.key(0), flow)
  (tokens, _), state = model.apply(variables, flow, capture_intermediates=True)
  regions_n = len(catalogue.REGIONS)
  assert tokens.shape == (2, regions_n + count, 32)
  p = nn.meta.unbox(variables["params"])
  stem_map = np.asarray(state["intermediates"]["patch_embed"]["__call__"][0]).reshape(2, -1)
  kernel, bias = np.asarray(p["summary"]["kernel"]), np.asarray(p["summary"]["bias"])
  for i in range(count):
    want = stem_map @ kernel[:, 32 * i:32 * (i + 1)] + bias[32 * i:32 * (i + 1)]
    np.testing.assert_allclose(np.asarray(tokens[:, regions_n + i]), want, rtol=1e-5, atol=1e-5)
  assert p["au_head"]["kernel"].shape[0] == regions_n * 32


def test_summary_tokens_refuse_a_negative_count():
  with pytest.raises(ValueError, match="summary_tokens -1"):
    motion.MotionConfig(_ENC, summary_tokens=-1)


def test_regions_follow_landmarks():
  lm = dict(regions.CANONICAL_LANDMARKS)
  for name, box in regions.region_boxes(lm).items():
    assert box == pytest.approx(regions.REGION_BOXES[name])
  lm["mouth"] = (0.0, 0.58)  # mouth 0.1 lower
  lm["brow"] = (-0.57, -0.42)  # brows 1.5 times wider apart
  boxes = regions.region_boxes(lm)
  assert boxes["mouth"][1] == pytest.approx(regions.REGION_BOXES["mouth"][1] + 0.1)
  assert boxes["brows"][0] == pytest.approx(regions.REGION_BOXES["brows"][0] * 1.5)
  assert regions.region_masks(32, landmarks=lm).shape == (len(catalogue.REGIONS), 32, 32)


def test_motion_words():
  assert words.direction(0.0, -1.0) == "up"
  assert words.direction(1.0, 0.1, "left") == "inward" and words.direction(1.0, 0.1, "right") == "outward"
  assert words.direction(-0.6, -0.8, "left") == "up and outward"
  assert words.direction(1.0, 0.0, "centre") == "sideways"
  assert [words.strength(a, 0.1) for a in (0.4, 1.0, 2.0)] == ["slightly", "clearly", "strongly"]
  for au in catalogue.AUS:  # "<region> <motion>" never repeats the region ("brows brows lower")
    text = answers.Cue(au.region, words.au_motion(au, "left", "clearly"), au.number).text()
    assert text.split()[1] != au.region and au.region not in au.motion.split()[:1], text
    assert answers.parse_answer(answers.format_answer(answers.Answer((answers.Cue(au.region, au.motion, au.number),),
                                                                     "x", "y."))).cues[0].au == au.number


@pytest.mark.slow
def test_interpretation_arrays_and_figure(tmp_path):
  from deft_jax import cli  # pylint: disable=import-outside-toplevel
  from deft_jax.data import tokenizer as tokenizer_lib  # pylint: disable=import-outside-toplevel
  from deft_jax.eval import evaluate, experts, plots  # pylint: disable=import-outside-toplevel
  from deft_jax.models import deft  # pylint: disable=import-outside-toplevel
  from deft_jax.train import state as state_lib  # pylint: disable=import-outside-toplevel
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny"])
  tokenizer_lib.train_tokenizer(tmp_path / "tok", cfg.data.tokenizer_vocab)
  model = state_lib.make_model(cfg, tokenizer_lib.load_tokenizer(tmp_path / "tok"))
  rng = np.random.default_rng(2)
  batch = deft.init_batch(model.config, 2, 8)
  batch = {**batch, "flow": rng.normal(size=batch["flow"].shape).astype(np.float32),
           "clip": rng.integers(0, 255, batch["clip"].shape, dtype=np.uint8)}
  params = model.init(jax.random.key(0), batch)["params"]
  full = np.asarray(evaluate.probabilities(model, params, batch))
  drops = experts.drops(full, {e: np.asarray(evaluate.probabilities(model, params, batch, (e,)))
                               for e in model.config.experts})
  assert full.shape == (2, 3) and set(drops) == {"structure", "texture", "motion"}
  assert all(d.shape == (2,) and np.all(np.abs(d) <= 1) for d in drops.values())
  scores = experts.region_scores(model, params, batch)
  assert scores.shape == (2, len(catalogue.REGIONS)) and np.allclose(scores.sum(-1), 1.0, atol=1e-5)
  probs = dict(zip(emotions.SCHEMES[cfg.data.scheme], map(float, full[0])))
  plots.prediction(batch["clip"][0, 0], batch["clip"][0, -1], batch["flow"][0, ..., :2], probs,
                   {k: float(v[0]) for k, v in drops.items()}, "test", "Emotion: negative", tmp_path / "face.png",
                   region_scores=scores[0])
  assert (tmp_path / "face.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_each_expert_reads_the_frames_at_its_own_size(tmp_path):
  """Texture at 32 px beside structure at 64 px: the texture expert sees the antialiased
  downscale of the 64-px clip, and its tokens are those it gives on that downscale directly."""
  from deft_jax import cli  # pylint: disable=import-outside-toplevel
  from deft_jax.data import tokenizer as tokenizer_lib  # pylint: disable=import-outside-toplevel
  from deft_jax.models import deft  # pylint: disable=import-outside-toplevel
  from deft_jax.train import state as state_lib  # pylint: disable=import-outside-toplevel
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny", "--config.model.texture.image_size=32",
                         "--config.model.texture.tubelet=(2, 8, 8)"])
  tokenizer_lib.train_tokenizer(tmp_path / "tok", cfg.data.tokenizer_vocab)
  model = state_lib.make_model(cfg, tokenizer_lib.load_tokenizer(tmp_path / "tok"))
  batch = deft.init_batch(model.config, 2, 8)
  # The schema gives each input at the size of the expert that reads it ...
  assert batch["clip"].shape[2:4] == (32, 32) and batch["keyframes"].shape[2:4] == (64, 64)
  rng = np.random.default_rng(0)
  # ... and a dataset's 64-px clip is read by the 32-px expert all the same.
  batch = {**batch, "clip": rng.integers(0, 256, (2, 8, 64, 64, 3), dtype=np.uint8)}
  params = model.init(jax.random.key(0), batch)["params"]
  _, aux = model.apply({"params": params}, batch, method=model.encode)
  pixels = batch["clip"].astype(np.float32) / 255.0
  # An antialiased halving of a 64-px image is (nearly) the mean of each 2x2 block.
  small = jax.image.resize(pixels, (2, 8, 32, 32, 3), "linear", antialias=True)
  blocks = pixels.reshape(2, 8, 32, 2, 32, 2, 3).mean(axis=(3, 5))
  assert np.abs(np.asarray(small) - blocks).mean() < 0.5 * np.abs(pixels[:, :, ::2, ::2] - blocks).mean()
  expert = texture.TextureExpert(model.config.expert("texture"))
  tokens = expert.apply({"params": params["texture"]}, small, method=texture.TextureExpert.encode)
  projected = deft.Projector(model.config.llm.hidden_size, model.config.llm.hidden_size).apply(
      {"params": params["texture_projector"]}, tokens)
  np.testing.assert_allclose(np.asarray(aux["tokens"]["texture"]), np.asarray(projected), atol=1e-5)
  assert aux["tokens"]["texture"].shape[1] == (32 // 8) ** 2


@pytest.mark.parametrize("per_clip", [False, True])
def test_region_pool_is_attention_biased_by_the_log_share(per_clip):
  """RegionPool (jax.nn.dot_product_attention) against the formula written out: softmax over
  patches of q.k / sqrt(hd) + log(share), so a patch outside the region gets no weight."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(7)
  x = rng.normal(size=(2, 16, 32)).astype(np.float32)
  shares = rng.uniform(size=(2, 6, 16) if per_clip else (6, 16)).astype(np.float32)
  shares[..., :4] = 0.0
  pool = motion.RegionPool(_ENC)
  p = _unbox(pool.init(jax.random.key(0), x, shares)["params"])
  got = np.asarray(pool.apply({"params": p}, x, shares))
  lin = lambda name, y: y @ p[name]["kernel"] + p[name]["bias"]
  q = lin("q_proj", p["queries"]).reshape(6, 4, 8)
  k, v = lin("k_proj", x).reshape(2, 16, 4, 8), lin("v_proj", x).reshape(2, 16, 4, 8)
  bias = np.log(np.maximum(shares, 1e-9))
  logits = np.einsum("rhd,bnhd->bhrn", q, k) / np.sqrt(8) + (bias[:, None] if per_clip else bias)
  weights = np.asarray(nn.softmax(jnp.asarray(logits)))
  assert weights[..., :4].max() < 1e-7  # no weight outside the region
  want = lin("out_proj", np.einsum("bhrn,bnhd->brhd", weights, v).reshape(2, 6, 32))
  np.testing.assert_allclose(got, want, atol=1e-5)
