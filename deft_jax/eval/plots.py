"""Figures for people: confusion matrices, training curves, AU cue scores, expert
contributions, and one clip's prediction. Each function writes one PNG (matplotlib Agg)."""

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from deft_jax.facs import catalogue, regions  # pylint: disable=g-import-not-at-top,wrong-import-position

SCORE_CMAP = plt.cm.autumn  # region scores: red (low) to yellow (high), visible on any skin


def _save(fig, path) -> None:
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)


def confusion(parts: dict[str, dict], classes, path) -> None:
  """One panel per part ({"full": scored, "casme2": scored, ...}), counts with row shares."""
  fig, axes = plt.subplots(1, len(parts), figsize=(3.6 * len(parts) + 0.4, 3.8), squeeze=False)
  for ax, (name, s) in zip(axes[0], parts.items()):
    cm = np.asarray(s["confusion"])
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(cm):
      ax.text(j, i, str(n), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes if ax is axes[0][0] else [""] * len(classes))
    ax.set_xlabel("predicted")
    ax.set_title(f"{name} (n={cm.sum()})\nUF1 {s['uf1']:.3f}  UAR {s['uar']:.3f}", fontsize=9)
  axes[0][0].set_ylabel("true")
  _save(fig, path)


def curves(rows: list[dict], path, weights: dict[str, float] | None = None, test: dict[str, float] | None = None) -> None:
  """Every logged quantity of metrics.jsonl against the step, one panel each, but the loss
  terms whose weight in `weights` (the config's `loss`) is 0: they are logged, not trained.
  `test`: held-out scores ({"uf1": ..}) at the last step, drawn as their own panel."""
  skipped = [k for k in rows[0] if weights is not None and k in weights and not weights[k]]
  keys = [k for k in rows[0] if k != "step" and k not in skipped]
  panels = keys + (["held-out test"] if test else [])
  cols = min(3, len(panels))
  nrows = -(-len(panels) // cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
  steps = [r["step"] for r in rows]
  for ax, key in zip(axes.flat, keys):
    ax.plot(steps, [r.get(key, np.nan) for r in rows], marker="." if len(rows) < 50 else None)
    ax.set_title(key + (" (weighted total)" if key == "loss" else ""), fontsize=9)
    ax.set_xlabel("step")
  if test:
    ax = axes.flat[len(keys)]
    for name, value in test.items():
      ax.plot([steps[-1]], [value], marker="o", linestyle="none", label=f"{name} {value:.3f}")
    ax.set_xlim(steps[0], steps[-1] + 1)
    ax.set_ylim(0, 1)
    ax.set_title("held-out test (evaluated at the end)", fontsize=9)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  if skipped:
    fig.suptitle(f"not drawn: {', '.join(skipped)} (weight 0 in the config's loss)", fontsize=8)
  fig.tight_layout()
  _save(fig, path)


def sweep_points(scores: dict[str, dict], path, metric: str = "uf1") -> None:
  """One row per sweep point ({point: {seed: score}}), in order: each seed's score a dot in that
  seed's colour, their mean a diamond, so a margin between points can be read against the spread
  between seeds (and a seed that is high everywhere stands out)."""
  names = list(scores)
  seeds = list(dict.fromkeys(seed for per_seed in scores.values() for seed in per_seed))
  colours = {seed: plt.cm.tab10(i % 10) for i, seed in enumerate(seeds)}
  fig, ax = plt.subplots(figsize=(7, 1.0 + 0.28 * len(names)))
  labelled = set()  # each seed named once in the legend
  for y, name in enumerate(names):
    for seed, value in scores[name].items():
      ax.plot([value], [y], "o", color=colours[seed], alpha=0.7, markersize=5,
              label=None if seed in labelled else f"seed {seed}")
      labelled.add(seed)
    ax.plot([np.mean(list(scores[name].values()))], [y], "D", color="black", markersize=6)
  ax.set_yticks(range(len(names)), names, fontsize=8)
  ax.invert_yaxis()
  ax.grid(axis="x", alpha=0.3)
  ax.set_xlabel(f"{metric} (dots: seeds; diamond: their mean)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
  _save(fig, path)


def au_cues(per_au: dict[str, dict], path, answers: int | None = None, clips: int | None = None) -> None:
  """Precision and recall of the AUs cited in generated answers, per AU (missing: undefined);
  the title says from how many answers, of how many test clips."""
  names = list(per_au)
  x = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 1), 3.2))
  for offset, key in ((-0.2, "precision"), (0.2, "recall")):
    values = [np.nan if per_au[n][key] is None else per_au[n][key] for n in names]
    ax.bar(x + offset, values, 0.4, label=key)
  ax.set_xticks(x, [f"{n}\n({per_au[n]['labelled']})" for n in names], fontsize=8)
  ax.set_ylim(0, 1)
  ax.set_ylabel("score")
  used = f" ({answers} answers of {clips} test clips)" if answers is not None and clips is not None else ""
  ax.set_title(f"AU cues in generated answers vs labelled AUs{used}; labelled count below", fontsize=9)
  ax.legend(fontsize=8)
  _save(fig, path)


def experts(summary: dict[str, dict], path) -> None:
  """Mean drop of the predicted class's probability without each expert, overall and by class."""
  names = list(summary)
  classes = list(next(iter(summary.values())).get("mean_drop_by_class", {}))
  groups = ["all"] + classes
  width = 0.8 / len(groups)
  fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 1), 3.2))
  for g, group in enumerate(groups):
    values = [summary[n]["mean_drop"] if group == "all" else summary[n]["mean_drop_by_class"].get(group, np.nan)
              for n in names]
    ax.bar(np.arange(len(names)) + (g - (len(groups) - 1) / 2) * width, values, width, label=group)
  ax.axhline(0, color="black", linewidth=0.6)
  ax.set_xticks(range(len(names)), [f"{n}\nUF1 without {summary[n]['uf1_without']:.3f}" for n in names], fontsize=8)
  ax.set_ylabel("drop in p(predicted class)")
  ax.set_title("Expert contributions (leave one expert out at inference)", fontsize=9)
  ax.legend(fontsize=7, title="true class", title_fontsize=7)
  _save(fig, path)


def flow_colour(flow: np.ndarray, scale: float | None = None) -> np.ndarray:
  """RGB image of (dx, dy) flow: hue is the direction, brightness the length (up to `scale`)."""
  length = np.hypot(flow[..., 0], flow[..., 1])
  scale = scale or max(float(length.max()), 1e-6)
  hue = (np.arctan2(flow[..., 1], flow[..., 0]) / (2 * np.pi)) % 1.0
  hsv = np.stack([hue, np.ones_like(hue), np.clip(length / scale, 0, 1)], -1)
  return matplotlib.colors.hsv_to_rgb(hsv)


def _outline_regions(ax, size: int, scores: np.ndarray | None = None, boxes=None) -> None:
  """Each face region's outline and name; coloured by `scores` (R,) when given, else one colour each.

  boxes: the clip's regions placed by its landmarks (canonical coordinates), else canonical.
  """
  top = max(float(np.max(scores)), 1e-9) if scores is not None else 1.0
  for i, (name, mask) in enumerate(zip(catalogue.REGIONS, regions.region_masks(size, boxes=boxes))):
    if scores is None:
      colour, width, label, box = plt.cm.tab10(i), 1, name, None
    else:
      colour, width, label = SCORE_CMAP(scores[i] / top), 1 + 3 * scores[i] / top, f"{name} {scores[i]:.2f}"
      box = {"facecolor": "black", "alpha": 0.4, "pad": 1, "linewidth": 0}
    ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=width)
    y, x = np.argwhere(mask)[0]
    ax.text(x + 1, y + 1, label, color=colour, fontsize=7, va="top", bbox=box)


def _flow_arrows(ax, flow: np.ndarray, colour: str, width: float) -> float:
  """Flow (S, S, 2) as arrows on a 16 x 16 grid, the longest one grid step long; returns it (px)."""
  size = flow.shape[0]
  step = max(1, size // 16)
  ys, xs = np.mgrid[step // 2:size:step, step // 2:size:step]
  u, v = flow[ys, xs, 0], flow[ys, xs, 1]
  longest = float(np.hypot(u, v).max())
  ax.quiver(xs, ys, u, v, color=colour, angles="xy", scale_units="xy", scale=max(longest / step, 1e-6), width=width)
  return longest


def prediction(onset: np.ndarray, apex: np.ndarray, flow: np.ndarray, probs: dict[str, float],
               drops: dict[str, float], title: str, answer: str, path,
               region_scores: np.ndarray | None = None, boxes=None, landmarks: np.ndarray | None = None) -> None:
  """The onset face with region outlines (coloured by the motion expert's region scores when
  given; placed by the face's landmarks when `boxes` are given, canonical otherwise) and its
  landmarks (onset's pixels), onset->apex flow over the apex face, class probabilities, and
  each expert's contribution (drop in p(predicted class) without it)."""
  # Constrained layout leaves room for each bar panel's tick labels (class and expert names).
  fig, axes = plt.subplots(1, 4, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1, 0.9, 0.9]},
                           layout="constrained")
  ax = axes[0]
  ax.imshow(onset)
  _outline_regions(ax, onset.shape[0], region_scores, boxes)
  if landmarks is not None:
    ax.scatter(landmarks[:, 0], landmarks[:, 1], s=4, c="yellow", linewidths=0)
  placed = "placed by landmarks" if boxes is not None and landmarks is not None else "canonical"
  ax.set_title(f"aligned onset, face regions ({placed})"
               + ("\n(share of the motion expert's tokens)" if region_scores is not None else ""), fontsize=9)
  ax = axes[1]
  size = flow.shape[0]
  ax.imshow(apex, extent=(-0.5, size - 0.5, size - 0.5, -0.5))
  ax.imshow(flow_colour(flow), alpha=0.45, extent=(-0.5, size - 0.5, size - 0.5, -0.5))
  _flow_arrows(ax, flow, "white", 0.006)
  ax.set_title(f"apex, onset->apex flow (max {np.hypot(flow[..., 0], flow[..., 1]).max():.2f} px)", fontsize=9)
  for a in axes[:2]:
    a.set_xticks([])
    a.set_yticks([])
  ax = axes[2]
  ax.barh(list(probs), list(probs.values()), color="tab:blue")
  ax.set_xlim(0, 1)
  ax.invert_yaxis()
  ax.set_title("class probabilities", fontsize=9)
  ax = axes[3]
  values = list(drops.values())
  ax.barh(list(drops), values, color=["tab:green" if d >= 0 else "tab:red" for d in values])
  ax.axvline(0, color="black", linewidth=0.6)
  ax.invert_yaxis()
  ax.set_title("expert contribution\n(drop in p(predicted) without it)", fontsize=9)
  fig.suptitle(title, fontsize=11)
  text = "\n".join(textwrap.fill(line, 160) for line in (answer.strip() or "(empty answer)").splitlines())
  fig.text(0.01, -0.02, text, fontsize=8, va="top", family="monospace")
  _save(fig, path)
