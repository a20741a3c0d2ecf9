"""A face with its regions outlined in the colour of the motion expert's region scores and
the onset->apex flow drawn over it (scores: deft_jax.models.interpret.region_scores)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from deft_jax.facs import catalogue, regions  # pylint: disable=g-import-not-at-top,wrong-import-position


def region_figure(face: np.ndarray, flow: np.ndarray, scores: np.ndarray, path, title: str = "",
                  contributions: dict[str, float] | None = None) -> None:
  """Writes a PNG: `face` (S, S, 3) uint8 with each region's box outlined and shaded by its
  score (R,), flow (S, S, 2) as arrows, and optionally each expert's contribution as text."""
  scores = np.asarray(scores, np.float64)
  if scores.shape != (len(catalogue.REGIONS),):
    raise ValueError(f"scores of shape {scores.shape}; expected one per region {catalogue.REGIONS}")
  size = face.shape[0]
  fig, ax = plt.subplots(figsize=(5.2, 5.6))
  ax.imshow(face, extent=(-0.5, size - 0.5, size - 0.5, -0.5))
  cmap = plt.cm.autumn  # red (low) to yellow (high): visible on any skin
  top = max(float(scores.max()), 1e-9)
  for name, score, mask in zip(catalogue.REGIONS, scores, regions.region_masks(size)):
    colour = cmap(score / top)
    ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1 + 3 * score / top)
    y, x = np.argwhere(mask)[0]
    ax.text(x + 1, y + 1, f"{name} {score:.2f}", color=colour, fontsize=7, va="top",
            bbox={"facecolor": "black", "alpha": 0.4, "pad": 1, "linewidth": 0})
  step = max(1, size // 16)
  ys, xs = np.mgrid[step // 2:size:step, step // 2:size:step]
  u, v = flow[ys, xs, 0], flow[ys, xs, 1]
  longest = float(np.hypot(u, v).max())
  ax.quiver(xs, ys, u, v, color="cyan", angles="xy", scale_units="xy", scale=max(longest / step, 1e-6), width=0.005)
  ax.set_xticks([])
  ax.set_yticks([])
  label = f"region share of the motion expert's tokens; flow up to {longest:.2f} px"
  if contributions:
    label += "\nexpert contribution (drop in p): " + ", ".join(f"{k} {v:+.3f}" for k, v in contributions.items())
  ax.set_xlabel(label, fontsize=8)
  ax.set_title(title, fontsize=10)
  fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, top)), ax=ax,
               fraction=0.046, pad=0.02)
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)
