"""TV-L1 optical flow: deft-jax against scikit-image, and OpenCV's Farneback and DIS.

Every method gets the same synthetic face pairs with an exactly known micro-deformation
(deft_jax.flow.synthetic). Beside each time stand the mean end-point error against the exact
flow (inside the face, away from the border) and the mean end-point difference from
scikit-image's optical_flow_tvl1. The last line printed is one JSON object.

  python benchmarks/flow_tvl1.py                  # 64 pairs at 128x128, CPU
  python benchmarks/flow_tvl1.py --pairs 8        # a quick check
  python benchmarks/flow_tvl1.py --gpu-size 256   # deft-jax pairs/s at 256x256, any backend
"""

import argparse
import json
import os
import time

import cv2
import jax
import numpy as np
from skimage.registration import optical_flow_tvl1

from deft_jax.flow import synthetic
from deft_jax.flow import dual_tvl1

import timing

MARGIN = 8  # px of border left out of the error


def make_pairs(n_pairs, size, seed):
  """Face-like pairs moved by local bumps, a small shift and a small rotation."""
  rng = np.random.default_rng(seed)
  frames0, frames1, flows, masks = [], [], [], []
  for _ in range(n_pairs):
    face, mask = synthetic.face(rng, size)
    warp = synthetic.compose(
        synthetic.bumps(rng, size),
        synthetic.translation(*rng.uniform(-0.5, 0.5, 2)),
        synthetic.rotation(rng.uniform(-1, 1), size / 2, size / 2))
    f0, f1, flow = synthetic.render_pair(face, warp, size)
    mask[:MARGIN] = mask[-MARGIN:] = mask[:, :MARGIN] = mask[:, -MARGIN:] = False
    frames0.append(f0)
    frames1.append(f1)
    flows.append(flow)
    masks.append(mask)
  return (np.stack(frames0).astype(np.float32), np.stack(frames1).astype(np.float32),
          np.stack(flows), np.stack(masks))


def epe(flow, ref, masks):
  return float(np.linalg.norm(flow - ref, axis=-1)[masks].mean())


def deft(frames0, frames1, params, chunk=None):
  return np.asarray(jax.block_until_ready(
      dual_tvl1.tvl1(frames0, frames1, chunk=chunk, **params)))


def skimage_loop(frames0, frames1):
  return np.stack([optical_flow_tvl1(a, b)[::-1].transpose(1, 2, 0)
                   for a, b in zip(frames0, frames1)])


def to_uint8(frames):
  return np.clip(np.round(frames * 255), 0, 255).astype(np.uint8)


def farneback(frames0, frames1):
  return np.stack([
      cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15,
                                   iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
      for a, b in zip(to_uint8(frames0), to_uint8(frames1))])


def dis(frames0, frames1):
  solver = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
  return np.stack([solver.calc(a, b, None)
                   for a, b in zip(to_uint8(frames0), to_uint8(frames1))])


def cpu_run(args):
  frames0, frames1, exact, masks = make_pairs(args.pairs, args.size, args.seed)
  results = {}
  sk_time, sk_flow = timing.best_of(lambda: skimage_loop(frames0, frames1), args.repeats)
  results["skimage_tvl1"] = (sk_time, sk_flow, None)
  for name, params in (("deft_jax_tvl1", {}),
                       ("deft_jax_tvl1_skimage_compatible", dual_tvl1.SKIMAGE_COMPATIBLE)):
    start = time.perf_counter()
    deft(frames0, frames1, params)
    compile_s = time.perf_counter() - start
    seconds, flow = timing.best_of(lambda p=params: deft(frames0, frames1, p), args.repeats)
    results[name] = (seconds, flow, compile_s)
  for name, fn in (("opencv_farneback", farneback), ("opencv_dis_medium", dis)):
    results[name] = (*timing.best_of(lambda f=fn: f(frames0, frames1), args.repeats), None)

  report = {"benchmark": "flow_tvl1", "pairs": args.pairs, "size": args.size,
            "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
            "methods": {}}
  for name, (seconds, flow, compile_s) in results.items():
    row = {"seconds": round(seconds, 4), "pairs_per_s": round(args.pairs / seconds, 2),
           "epe_vs_exact": round(epe(flow, exact, masks), 4),
           "epd_vs_skimage": round(epe(flow, sk_flow, masks), 4),
           "speedup_vs_skimage": round(sk_time / seconds, 2)}
    if compile_s is not None:
      row["first_call_s"] = round(compile_s, 2)
    report["methods"][name] = row
    print(f"{name:34s} {seconds:8.3f} s  {args.pairs / seconds:8.1f} pairs/s  "
          f"EPE exact {row['epe_vs_exact']:.4f}  vs skimage {row['epd_vs_skimage']:.4f}  "
          f"x{row['speedup_vs_skimage']:.1f}")
  return report


def accelerator_run(args):
  size = args.gpu_size
  frames0, frames1, exact, masks = make_pairs(args.pairs, size, args.seed)
  start = time.perf_counter()
  deft(frames0, frames1, {})
  compile_s = time.perf_counter() - start
  seconds, flow = timing.best_of(lambda: deft(frames0, frames1, {}), args.repeats)
  report = {"benchmark": "flow_tvl1_accelerator", "pairs": args.pairs, "size": size,
            "backend": jax.default_backend(), "device": str(jax.devices()[0]),
            "seconds": round(seconds, 4), "pairs_per_s": round(args.pairs / seconds, 2),
            "first_call_s": round(compile_s, 2), "epe_vs_exact": round(epe(flow, exact, masks), 4)}
  print(f"deft-jax TV-L1 {size}x{size} on {report['device']}: {report['pairs_per_s']} pairs/s")
  return report


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pairs", type=int, default=64)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed runs per method after a warm-up; the best is kept")
  parser.add_argument("--seed", type=int, default=None, help="data seed (default: random)")
  parser.add_argument("--gpu-size", type=int, default=None,
                      help="only time deft-jax at this size on the default backend")
  args = parser.parse_args()
  if args.seed is None:
    args.seed = int(np.random.SeedSequence().entropy % 2**32)
  report = accelerator_run(args) if args.gpu_size else cpu_run(args)
  report["seed"] = args.seed
  print(json.dumps(report))


if __name__ == "__main__":
  main()
