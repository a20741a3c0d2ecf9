"""OpenCV's DualTVL1 (defaults) on the pairs of an .npz; run by flow_opencv.py in the
environment that has opencv-contrib-python. Imports nothing of deft-jax.

  python flow_opencv_worker.py PAIRS.npz OUT.npz REPEATS
"""

import sys
import time

import cv2
import numpy as np


def main():
  pairs, out, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
  data = np.load(pairs)
  frames0, frames1 = data["frames0"], data["frames1"]
  solver = cv2.optflow.DualTVL1OpticalFlow_create()
  solver.calc(frames0[0], frames1[0], None)  # warm-up
  best, flows = np.inf, None
  for _ in range(repeats):
    start = time.perf_counter()
    flows = np.stack([solver.calc(a, b, None) for a, b in zip(frames0, frames1)])
    best = min(best, time.perf_counter() - start)
  np.savez(out, flow=flows, seconds=best, version=cv2.__version__)


if __name__ == "__main__":
  main()
