"""What the report's figures show (issue 15, item 15): no zero-weight loss terms, the held-out
scores beside the curves, how many answers the AU figure uses, tick labels clear of their
neighbours in prediction.png."""

import numpy as np
import pytest

from deft_jax.eval import plots


@pytest.fixture
def figures(monkeypatch):
  """The figures the plot functions would save, kept open for inspection."""
  kept = []
  monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig))
  yield kept
  for fig in kept:
    plots.plt.close(fig)


def _titles(fig):
  return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.axison]


def test_curves_leave_out_zero_weight_terms_and_show_the_test_scores(figures):
  rows = [{"step": s, "loss": 3.0 / s, "lm": 2.0 / s, "emotion": 1.0 / s, "au": 0.5, "decorrelation": 0.1}
          for s in (1, 2, 3)]
  plots.curves(rows, "unused.png", weights={"lm": 1.0, "emotion": 1.0, "au": 0.5, "decorrelation": 0.0},
               test={"uf1": 0.61, "uar": 0.58})
  (fig,) = figures
  titles = _titles(fig)
  assert "decorrelation" not in titles and {"lm", "emotion", "au"} <= set(titles)
  assert "held-out test (evaluated at the end)" in titles
  assert "decorrelation (weight 0" in fig._suptitle.get_text()  # pylint: disable=protected-access
  test_ax = next(ax for ax in fig.axes if ax.get_title().startswith("held-out"))
  assert sorted(t.get_text() for t in test_ax.get_legend().get_texts()) == ["uar 0.580", "uf1 0.610"]


def test_au_cue_figure_says_how_many_answers_it_used(figures):
  per_au = {"AU12": {"precision": 0.5, "recall": 1.0, "cited": 2, "labelled": 1}}
  plots.au_cues(per_au, "unused.png", answers=1, clips=90)
  assert "(1 answers of 90 test clips)" in figures[0].axes[0].get_title()


def test_prediction_tick_labels_do_not_overlap_the_next_panel(figures):
  rng = np.random.default_rng(0)
  face = rng.integers(0, 255, (64, 64, 3), np.uint8)
  flow = rng.normal(size=(64, 64, 2)).astype(np.float32)
  probs = {"negative": 0.2, "positive": 0.7, "surprise": 0.1}
  drops = {"structure": 0.1, "texture": -0.05, "motion": 0.3}
  plots.prediction(face, face, flow, probs, drops, "clip", "Cues: x\nEmotion: positive\nReasoning: y", "unused.png")
  (fig,) = figures
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  axes = fig.axes[:4]
  for left, right in zip(axes[1:3], axes[2:4]):
    labels = [t.get_window_extent(renderer) for t in right.get_yticklabels() if t.get_text()]
    assert labels, "the bar panel has named ticks"
    left_edge = left.get_window_extent(renderer).x1
    assert min(b.x0 for b in labels) > left_edge, (right.get_title(), min(b.x0 for b in labels), left_edge)


def test_sweep_figure_draws_each_points_seeds_and_their_mean_in_order(figures):
  from deft_jax.train import sweep  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng()
  scores = {f"p{i}": dict(enumerate(rng.uniform(0.5, 0.8, 3).round(4).tolist())) for i in range(4)}
  rows = [{"point": p, "seed": s, "fold": "", "uf1": v} for p, vs in scores.items() for s, v in vs.items()]
  rows += [{"point": "p0", "seed": "mean of 3", "fold": "", "uf1": 0.0}]  # a mean row is not a seed
  rows += [{"point": "loso", "seed": 0, "fold": f, "uf1": v} for f, v in [("fold0", 0.1), ("pooled (2 folds)", 0.7)]]
  assert sweep.seed_scores(rows) == {**scores, "loso": {0: 0.7}}
  plots.sweep_points(sweep.seed_scores(rows), "unused.png")
  (fig,) = figures
  ax = fig.axes[0]
  assert [t.get_text() for t in ax.get_yticklabels()] == [*scores, "loso"]
  dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
  means = [line for line in ax.get_lines() if line.get_marker() == "D"]
  for y, (name, values) in enumerate(scores.items()):
    np.testing.assert_allclose([d.get_xdata()[0] for d in dots[3 * y:3 * y + 3]], list(values.values()))
    assert all(d.get_ydata()[0] == y for d in dots[3 * y:3 * y + 3])
    assert [d.get_color() for d in dots[3 * y:3 * y + 3]] == [d.get_color() for d in dots[:3]]  # a colour per seed
    np.testing.assert_allclose(means[y].get_xdata(), [np.mean(list(values.values()))])
  assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["seed 0", "seed 1", "seed 2"]
