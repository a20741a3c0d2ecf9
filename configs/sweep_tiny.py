"""A small sweep for tests and as an example: two seeds crossed with 2 LOSO folds.

    deft-jax sweep --config configs/sweep_tiny.py --workdir /tmp/sweep

Four runs of the tiny job (seeds 0 and 1, each on two folds of the subjects of
synthetic_me/tiny's pooled splits), then a table with one pooled LOSO row per seed and their
mean and spread. configs/ablations.py is the full grid of the same format (documented in
deft_jax/train/sweep.py).
"""

from configs import synthetic


def get_config(arg: str | None = None):
  del arg
  c = synthetic.get_config("tiny")
  with c.unlocked():
    c.train.update(steps=2, log_every=1, checkpoint_every=2, generate_examples=0, expert_contributions=False)
    c.sweep = ({"name": "full", "overrides": {}},)
    c.seeds = (0, 1)
    c.loso_folds = 2
  return c
