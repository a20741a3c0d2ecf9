"""Uni-MER: flow evidence per AU, the dual constraint, the builder and the pipeline switch."""

import os

import numpy as np
import pytest

from deft_jax.data import answers, build, pipeline, synthetic, tokenizer as tokenizer_lib
from deft_jax.facs import catalogue, dual_constraint, evidence, regions



def _uni_mer(synthetic_tiny, name):
  root = os.path.dirname(os.path.dirname(os.path.dirname(synthetic_tiny.data_dir)))
  return build.prepare(name, root)


@pytest.fixture(scope="module")
def uni_mer(synthetic_tiny):
  """uni_mer/synthetic_tiny_noisy_aus (the generator's exact flow), in the session's TFDS folder."""
  return _uni_mer(synthetic_tiny, "uni_mer/synthetic_tiny_noisy_aus")


@pytest.fixture(scope="module")
def uni_mer_tvl1(synthetic_tiny):
  """The same clips measured on TV-L1 flow from their frames, as on real corpora."""
  return _uni_mer(synthetic_tiny, "uni_mer/synthetic_tiny_noisy_aus_tvl1")


@pytest.fixture(scope="module")
def uni_mer_folds(synthetic_tiny):
  """Over synthetic_me/tiny_noisy_aus_folds (built by uni_mer as its source): skin folds and AUs
  that peak before the apex."""
  return _uni_mer(synthetic_tiny, "uni_mer/synthetic_tiny_noisy_aus_folds")


def _records(builder):
  return [s[i] for s in builder.as_data_source().values() for i in range(len(s))]


def _bump_flow(size, number, amplitude, head=(0.0, 0.0), half="both"):
  """An exact flow of one AU on an image half (or both) plus a head shift, as synthetic_me renders it."""
  grid = evidence.canonical_grid(size)
  flow = np.zeros((size, size, 2)) + np.asarray(head)
  au = catalogue.au(number)
  for centre, direction in regions.au_sites(au, None, half):
    bump = np.exp(-((grid[..., 0] - centre[0]) ** 2 + (grid[..., 1] - centre[1]) ** 2) / (2 * au.spread ** 2))
    flow += amplitude * bump[..., None] * np.asarray(direction) / np.hypot(*direction)
  return flow


def test_evidence_names_the_au_that_moved_and_not_its_neighbours():
  m = evidence.Measurer(48)
  got = m(_bump_flow(48, 1, 1.5, head=(0.3, -0.2)))
  amplitude = got.au_amplitude()
  assert amplitude[catalogue.au_index(1)] == pytest.approx(1.5, abs=0.05)
  others = np.delete(amplitude, catalogue.au_index(1))
  assert others.max() < 0.05
  assert got.head["shift_x"] == pytest.approx(0.3, abs=0.02) and got.head["shift_y"] == pytest.approx(-0.2, abs=0.02)
  assert got.regions["brows"].magnitude > got.regions["chin"].magnitude
  # The opposite motion (brows pushed down) is no evidence for AU1.
  assert m(_bump_flow(48, 1, -1.5)).au_amplitude()[catalogue.au_index(1)] < 0.05


def test_sides_are_the_subjects_own():
  """FACS's "L12" is the subject's left: the image-right half of a frontal, unmirrored face."""
  assert regions.image_half("left") == "right" and regions.subject_side("right") == "left"
  measurer = evidence.Measurer(48)
  i = catalogue.au_index(12)
  for half, subject_side in (("right", "left"), ("left", "right"), ("both", "both")):
    m = measurer(_bump_flow(48, 12, 2.0, half=half))
    assert m.side(i) == subject_side, half
    labels = np.zeros(catalogue.NUM_AUS, np.uint8)
    labels[i] = 1
    cue, = answers.measured_cues(dual_constraint.check(labels, m), m)
    assert cue.motion.endswith("" if subject_side == "both" else f" on the {subject_side} side"), cue.motion
  clip = _left_au_clip()  # its label's "L" moves the image-right half, measured as the left
  m = measurer(clip["flow"])
  for token in clip["au_string"].split("+"):
    if token.startswith("L"):
      assert m.side(catalogue.au_index(int(token[1:]))) == "left", clip["au_string"]


def _left_au_clip():
  """A synthetic clip labelled with a left-only AU (its generator's own convention)."""
  rng = np.random.default_rng(1)
  subject = synthetic.make_subject("s1", rng)
  for _ in range(200):
    clip = synthetic.make_clip(subject, "contempt", synthetic.SOURCES["samm"], rng, num_frames=6, size=48)
    if "L" in clip["au_string"]:
      return clip
  raise AssertionError("no left-only AU in 200 contempt clips")


def test_dual_constraint_verdicts():
  m = evidence.Measurer(48)(_bump_flow(48, 12, 2.0))
  labels = np.zeros(catalogue.NUM_AUS, np.uint8)
  labels[[catalogue.au_index(12), catalogue.au_index(4)]] = 1
  v = dual_constraint.check(labels, m)
  assert np.flatnonzero(v.confirmed).tolist() == [catalogue.au_index(12)]
  assert np.flatnonzero(v.flagged).tolist() == [catalogue.au_index(4)]
  assert not v.added.any()
  v = dual_constraint.check(np.zeros(catalogue.NUM_AUS), m)  # nothing labelled: motion is added
  assert np.flatnonzero(v.added).tolist() == [catalogue.au_index(12)]
  cue, = answers.measured_cues(v, m)
  assert cue.au is None and cue.region == "mouth" and "up and outward" in cue.motion


@pytest.mark.parametrize("flow", ["uni_mer", "uni_mer_tvl1", "uni_mer_folds"])
def test_dual_constraint_recovers_the_true_aus_from_corrupted_labels(flow, request):
  uni_mer = request.getfixturevalue(flow)
  records = _records(uni_mer)
  confirmed = np.stack([r["aus_confirmed"] for r in records]).astype(bool)
  labels = np.stack([r["aus"] for r in records]).astype(bool)
  truth = np.stack([r["aus_true"] for r in records]).astype(bool)
  assert (labels != truth).any(axis=1).mean() > 0.15  # the labels really are corrupted
  tp, fp, fn = (confirmed & truth).sum(), (confirmed & ~truth).sum(), (~confirmed & truth).sum()
  precision, recall = tp / (tp + fp), tp / (tp + fn)
  print(f"confirmed AUs vs truth: precision {precision:.3f}, recall {recall:.3f}; "
        f"written labels: precision {(labels & truth).sum() / labels.sum():.3f}")
  assert precision >= 0.9 and recall >= 0.8
  assert precision > (labels & truth).sum() / labels.sum()  # cleaner than the labels
  report = uni_mer.info.metadata["uni_mer_report"]
  assert report["truth"]["confirmed_precision"] == pytest.approx(precision)
  assert sum(report["clips"].values()) == len(records)


def test_records_and_answers(uni_mer):
  for r in _records(uni_mer):
    labels, confirmed, flagged, added = (r[k].astype(bool) for k in ("aus", "aus_confirmed", "aus_flagged", "aus_added"))
    assert np.array_equal(confirmed | flagged, labels) and not (confirmed & flagged).any() and not (added & labels).any()
    assert len(r["tasks"]) == len(r["instructions"]) == len(r["answers"])
    assert r["instructions"][0].decode() == answers.INSTRUCTIONS[0]
    full = answers.parse_answer(r["answers"][0].decode())
    named = sorted(c.au for c in full.cues if c.au is not None)
    assert named == sorted(catalogue.AU_NUMBERS[i] for i in np.flatnonzero(confirmed))
    assert full.emotion == r["emotion"].decode()
    for text in r["answers"]:
      answers.parse_answer(text.decode())
    assert {"recognise", "describe", "region", "au", "explain"} == {t.decode() for t in r["tasks"]}


def test_pipeline_answers_switch(uni_mer, synthetic_tiny, tmp_path):
  tokenizer_lib.train_tokenizer(tmp_path / "tok", 1024)
  tok = tokenizer_lib.load_tokenizer(tmp_path / "tok")
  record = _records(uni_mer)[0]
  uni = pipeline.Preprocess(tok, "composite", 160, train=True, answers="uni_mer")
  labels = pipeline.Preprocess(tok, "composite", 160, train=True, answers="labels")
  ex = uni.map_with(record, 3)
  text = tok.decode(ex["text_ids"][ex["prompt_len"]:ex["text_mask"].sum()], skip_special_tokens=True)
  parsed = answers.parse_answer(text)
  assert parsed.emotion == ("negative", "positive", "surprise")[int(pipeline.record_label(record, "composite"))]
  np.testing.assert_array_equal(ex["aus"], record["aus_confirmed"])
  assert tok.decode(ex["text_ids"][:ex["prompt_len"]]).strip() == record["instructions"][3].decode()
  np.testing.assert_array_equal(labels.map_with(record, 0)["aus"], record["aus"])
  # Evaluation reads pair 0 in both modes: the same prompt, so the same classifier input.
  a, b = uni.map_with(record, 0), labels.map_with(record, 0)
  np.testing.assert_array_equal(a["text_ids"][:a["prompt_len"]], b["text_ids"][:b["prompt_len"]])
  plain = synthetic_tiny.as_data_source()["train"][0]
  with pytest.raises(KeyError, match="uni_mer"):
    uni.map_with(plain, 0)
  with pytest.raises(ValueError, match="data.answers"):
    pipeline.Preprocess(tok, "composite", 160, train=True, answers="both")
