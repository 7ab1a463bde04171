"""Held-out downstream tasks of the synthetic world, in the spirit of VTAB's structured group.

Each example is a single still image rendered with the video world's renderer (same
shapes, appearance, background, lighting and sensor-noise distributions, JPEG quality 90
like the training frames) on a fresh background. The random streams are tagged apart from
the training videos' streams (`[seed, index, 0|1]`), so no example shares anything with
any training video, and the train and test splits of a task use different streams.

Tasks (name: number of classes) and what the label is:
  class (10)       the class of the one prominent object (radius 0.16-0.30 of the image
                   side, near the centre); 0-2 small distractors of any class (radius
                   0.04-0.07) are drawn behind it, so "the big one" is well defined.
  count (6)        number of objects minus one (1..6 objects of random classes, radius
                   0.07-0.11, fully inside the image and not overlapping).
  position (5)     horizontal position of a single object: the bin of its centre's x in
                   5 equal bins over [0.1, 0.9].
  orientation (8)  rotation of a single object in 8 bins of 45 degrees over the full
                   circle. Only the classes with no rotational symmetry are used
                   (crescent, arrow), so every angle is distinguishable; stripe
                   directions are random per instance and carry no information.
  size (4)         radius of a single object in 4 geometric bins over [0.07, 0.4].
Labels are balanced: a shuffled tiling of range(num_classes).
"""

from __future__ import annotations

import math

import numpy as np

from vivi.input import synthetic as world

DOWNSTREAM_TASKS = {'class': 10, 'count': 6, 'position': 5, 'orientation': 8, 'size': 4}
SPLITS = ('train', 'test')
ORIENTATION_CLASSES = tuple(world.CLASS_NAMES.index(c) for c in ('crescent', 'arrow'))
SIZE_BINS = np.geomspace(0.07, 0.4, DOWNSTREAM_TASKS['size'] + 1)
_TAG = 0x5EED7A5C  # Keeps these streams apart from the training videos' streams.


def _sprite(rng: np.random.Generator, cls: int, cy: float, cx: float, radius: float,
            angle: float | None = None) -> world.Sprite:
  angle = rng.uniform(0, 2 * np.pi) if angle is None else angle
  return world.Sprite(world.sample_appearance(rng, cls), cy, cx, radius, angle)


def _inside(rng: np.random.Generator, radius: float) -> float:
  """A centre coordinate keeping the whole unit circle of the shape inside the image."""
  return rng.uniform(radius, 1 - radius)


def _random_class(rng: np.random.Generator) -> int:
  return int(rng.integers(world.NUM_CLASSES))


def _scene(task: str, label: int, rng: np.random.Generator) -> list[world.Sprite]:
  """The sprites (front to back) of one example whose answer is `label`."""
  if task == 'class':
    r = rng.uniform(0.16, 0.3)
    main = _sprite(rng, label, rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), r)
    distractors = []
    for _ in range(int(rng.integers(0, 3))):
      rd = rng.uniform(0.04, 0.07)
      distractors.append(_sprite(rng, _random_class(rng), _inside(rng, rd), _inside(rng, rd), rd))
    return [main] + distractors
  if task == 'count':
    return _non_overlapping(rng, label + 1)
  if task == 'position':
    r = rng.uniform(0.07, 0.1)
    lo, hi = 0.1, 0.9
    width = (hi - lo) / DOWNSTREAM_TASKS['position']
    cx = lo + (label + rng.random()) * width
    return [_sprite(rng, _random_class(rng), _inside(rng, r), cx, r)]
  if task == 'orientation':
    r = rng.uniform(0.15, 0.3)
    angle = (label + rng.random()) * 2 * np.pi / DOWNSTREAM_TASKS['orientation']
    cls = ORIENTATION_CLASSES[int(rng.integers(len(ORIENTATION_CLASSES)))]
    return [_sprite(rng, cls, _inside(rng, r), _inside(rng, r), r, angle)]
  if task == 'size':
    r = math.exp(rng.uniform(math.log(SIZE_BINS[label]), math.log(SIZE_BINS[label + 1])))
    return [_sprite(rng, _random_class(rng), _inside(rng, r), _inside(rng, r), r)]
  raise AssertionError(task)


def _non_overlapping(rng: np.random.Generator, n: int) -> list[world.Sprite]:
  """n sprites with disjoint unit circles, all inside the image (rejection sampling)."""
  scale = 1.0
  while True:
    placed = []
    for _ in range(n):
      for _ in range(100):
        r = rng.uniform(0.07, 0.11) * scale
        y, x = _inside(rng, r), _inside(rng, r)
        if all(math.hypot(y - py, x - px) > r + pr + 0.01 for py, px, pr in placed):
          placed.append((y, x, r))
          break
      else:
        break  # Crowded: start again with smaller objects.
    if len(placed) == n:
      return [_sprite(rng, _random_class(rng), y, x, r) for y, x, r in placed]
    scale *= 0.9


def render_downstream(task: str, split: str, num_examples: int, *, image_size: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 [N, image_size, image_size, 3] and labels int32 [N] of a held-out task."""
  if task not in DOWNSTREAM_TASKS:
    raise ValueError(f'unknown task {task!r}; valid tasks: {sorted(DOWNSTREAM_TASKS)}')
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; valid splits: {list(SPLITS)}')
  stream = [seed, _TAG, list(DOWNSTREAM_TASKS).index(task), SPLITS.index(split)]
  k = DOWNSTREAM_TASKS[task]
  labels = np.random.default_rng(stream).permutation(np.arange(num_examples) % k)
  images = np.empty((num_examples, image_size, image_size, 3), np.uint8)
  for i, label in enumerate(labels):
    rng = np.random.default_rng(stream + [i])
    background = world.render_background(
        world.sample_background(rng), world.sample_camera(rng), 0.0, image_size)
    rgb, _, _ = world.composite(background, _scene(task, int(label), rng))
    image = world.finish(rgb, world.sample_lighting(rng), rng)
    images[i] = world.decode_jpeg(world.encode_jpeg(image))  # Same artefacts as training.
  return images, labels.astype(np.int32)
