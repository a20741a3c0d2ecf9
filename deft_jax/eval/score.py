"""Re-scoring a prediction log: `deft-jax score LOG.csv [--scheme composite] [--out JSON]`."""

from deft_jax.eval import log as log_lib
from deft_jax.eval import metrics


def score_log(log: log_lib.Log) -> dict:
  """Pooled scores over every row, and per-dataset slices of the same pooled predictions."""
  return {"classes": list(log.classes), "num_clips": len(log),
          **metrics.pooled(log.truth, log.prediction, len(log.classes), log.dataset)}


def score_file(path, scheme: str = "composite") -> dict:
  return {"file": str(path), "scheme": scheme, **score_log(log_lib.read(path, scheme))}


def format_scores(scored: dict) -> str:
  """A table of UF1 / UAR / accuracy (full and per dataset), then per-class F1 and recall."""
  parts = {"full": scored["full"], **scored["per_dataset"]}
  width = max(len(n) for n in parts) + 2
  lines = [f"{scored.get('file', 'log')}: {scored['num_clips']} clips, classes {', '.join(scored['classes'])}",
           f"{'':{width}}{'UF1':>8}{'UAR':>8}{'acc':>8}{'clips':>7}"]
  for name, s in parts.items():
    lines.append(f"{name:{width}}{s['uf1']:8.4f}{s['uar']:8.4f}{s['accuracy']:8.4f}{s['num_clips']:7d}")
  full = scored["full"]
  lines.append("per class (full): " + "; ".join(
      f"{c} F1 {f:.4f} recall {r:.4f} (n={n})"
      for c, f, r, n in zip(scored["classes"], full["f1"], full["recall"], full["support"])))
  return "\n".join(lines)
