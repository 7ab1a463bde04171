"""A deterministic synthetic video world: the embedded default data of the project.

No machine this project runs on is guaranteed to reach YouTube-8M or ImageNet, so the
generator below renders a small world that has the structure the VIVI family of methods
relies on (frames within a shot are similar, shots of one video share objects, a detector
annotates objects imperfectly) and writes it in the same record format as real data.

The world
  Sprites. Ten classes defined only by SHAPE (`CLASS_NAMES`, which is also the label map).
    Each shape is a signed distance function on a unit-radius local frame, evaluated on the
    pixel grid with a one-pixel anti-aliasing ramp. An instance has a random grey level
    and a lighter or darker stripe pattern of random frequency, direction and phase that
    turns with it. Nothing about an instance's appearance depends on its class, so only
    the shape identifies it.
  Videos. A per-video background (smooth colour gradient plus a few low-frequency sinusoids,
    defined on an infinite world plane; each shot turns its colours round the hue circle by
    an angle of its own, version 4) and a cast of 2-4 instances drawn from 2-3 classes
    (the video's theme; an instance keeps its grey and stripes across shots). The video is
    cut into 3-7 shots of 4-14 seconds. Each shot has a new camera (position/zoom on the
    background plane, slow pan), new lighting (contrast, brightness, colour tint) and shows
    a random non-empty subset of the cast in a random depth order. Within a shot every
    object moves (bouncing off the borders, so it can leave the frame partially), spins and
    pulses in size; all motion is a closed-form function of time in seconds, so `fps` only
    changes how densely the same world is sampled. Frames carry a little sensor noise and
    are stored as JPEG (quality 90).
  Detector. Boxes are the visible extent of each object (after occlusion and clipping)
    with jitter; the score grows with the visible fraction plus noise; labels are wrong
    with probability 0.1; objects are missed with probability 0.1, and always when less
    than 35% is visible or the visible part is under 2 pixels; each frame has on average
    0.4 false positives with scores in [0.01, 0.35] (about a third below 0.05). At most 8
    boxes per frame, sorted by score. See `Detector`.
  Teacher. Every frame also carries the soft labels of a simulated classifier over the
    ten classes (logits grow with the area each class covers, plus noise; `Teacher`), the
    targets of the distillation ablation of Romijnders et al.
  Determinism. Video i of seed s draws its world from `default_rng([s, i, 0])`, its
    per-frame noise (sensor and detector) from `default_rng([s, i, 1])` and its shots' hue
    angles from `default_rng([s, i, 2])`, so it is the same whatever the number of
    processes, and the world (shots, cast, trajectories) is the same at every fps.

Why this world: every method trains on it in minutes on two CPU cores, and shape is the one
thing that tells an object's class. Colour says nothing of the class, and it no longer
tells an instance or a video apart either (objects are grey since version 3; each shot has
a palette of its own since version 4), so no pretext task can match views by colour instead
of shape. `GENERATOR_VERSION` numbers the world; versions 3 and 4 keep their predecessor's
random draws and change only what they name (projects/synthetic_world/results.md, "History
of the world": what each version changed, why, and what it measured).

The world is a frozen instrument that every kept result was measured on. A pilot world that
changes one thing to test a reading (projects/synthetic_world/world_pilots.py) goes through
one public hook: everything rendered inside `with rendering_with(RenderOptions(...)):`
(videos, datasets, and the held-out tasks, whose backgrounds come from `sample_background`)
has the options' values scaled or rounded after they are drawn, so a pilot makes the
world's draws and differs only where its options say. The defaults, `WORLD`, are the world
byte for byte. `build_dataset` records a pilot's options in its manifest; `ensure_dataset`,
whose cache holds only the world, refuses to run under a pilot.

Held-out downstream tasks (`DOWNSTREAM_TASKS`, `render_downstream`) live in
`synthetic_tasks.py`.
"""

from __future__ import annotations

import colorsys
import contextlib
import dataclasses
import io
import math
import multiprocessing
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

from vivi.input import records

# 2: frames carry a simulated classifier's soft labels; 3: grey objects; 4: a palette per shot.
GENERATOR_VERSION = 4
JPEG_QUALITY = 90

CLASS_NAMES = ('disc', 'ring', 'crescent', 'square', 'diamond', 'triangle', 'hexagon',
               'star', 'cross', 'arrow')
NUM_CLASSES = len(CLASS_NAMES)
# The most instances a video casts (2 to this many), so the most objects a frame shows.
MAX_CAST = 4

# ---------------------------------------------------------------------------------------
# Shapes: signed distance (negative inside) in a local frame where the shape fits in the
# unit circle. Polygons are unions of convex pieces, each an intersection of half-planes;
# outside a corner that is not the exact distance, which only matters for anti-aliasing.


def _convex(vertices) -> tuple[np.ndarray, np.ndarray]:
  """Unit outward normals [K, 2] and offsets [K] of a convex polygon's edges."""
  v = np.asarray(vertices, np.float64)
  if np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1]) < 0:
    v = v[::-1]  # Make it counter-clockwise, so that (e_y, -e_x) points outwards.
  e = np.roll(v, -1, axis=0) - v
  n = np.stack([e[:, 1], -e[:, 0]], axis=1) / np.linalg.norm(e, axis=1, keepdims=True)
  return n, np.sum(n * v, axis=1)


def _union(*polygons) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
  pieces = [_convex(p) for p in polygons]

  def sdf(u, v):
    d = [(u[..., None] * n[:, 0] + v[..., None] * n[:, 1] - a).max(-1) for n, a in pieces]
    return d[0] if len(d) == 1 else np.minimum.reduce(d)
  return sdf


def _ngon(k: int, radius: float, phase: float) -> np.ndarray:
  a = phase + 2 * np.pi * np.arange(k) / k
  return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def _star_kites() -> list[np.ndarray]:
  """A five-pointed star as five convex kites (centre, inner corner, tip, inner corner)."""
  kites = []
  for k in range(5):
    tip = np.pi / 2 + 2 * np.pi * k / 5
    kites.append(np.array([[0, 0], [0.42 * np.cos(tip - np.pi / 5), 0.42 * np.sin(tip - np.pi / 5)],
                           [np.cos(tip), np.sin(tip)],
                           [0.42 * np.cos(tip + np.pi / 5), 0.42 * np.sin(tip + np.pi / 5)]]))
  return kites


def _rect(u0, v0, u1, v1):
  return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


_SDF = (
    lambda u, v: np.sqrt(u * u + v * v) - 0.85,                              # disc
    lambda u, v: np.abs(np.sqrt(u * u + v * v) - 0.66) - 0.24,               # ring
    lambda u, v: np.maximum(np.sqrt(u * u + v * v) - 0.9,                    # crescent,
                            0.72 - np.sqrt((u - 0.42) ** 2 + v * v)),        # opens to +u
    _union(_ngon(4, 0.95, np.pi / 4)),                                       # square
    _union([(0, -1), (0.6, 0), (0, 1), (-0.6, 0)]),                          # diamond
    _union(_ngon(3, 1.0, np.pi / 2)),                                        # triangle
    _union(_ngon(6, 0.95, 0.0)),                                             # hexagon
    _union(*_star_kites()),                                                  # star
    _union(_rect(-0.9, -0.28, 0.9, 0.28), _rect(-0.28, -0.9, 0.28, 0.9)),    # cross
    _union(_rect(-0.9, -0.2, 0.1, 0.2), [(0, -0.62), (0.95, 0), (0, 0.62)]),  # arrow, to +u
)
assert len(_SDF) == NUM_CLASSES


def _unit_areas(n: int = 256) -> np.ndarray:
  """Area of each shape in the unit frame: the denominator of an object's visible fraction."""
  g = (np.arange(n) + 0.5) / n * 2 - 1
  u, v = np.meshgrid(g, g)
  return np.array([4.0 * np.mean(sdf(u, v) < 0) for sdf in _SDF])


_AREA = _unit_areas()

# ---------------------------------------------------------------------------------------
# The pilots' hook (the module docstring says why).


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  """What a pilot world changes; the defaults (`WORLD`) are the world. Each field scales or
  rounds a value after it is drawn, so every random draw is the world's."""
  wave_scale: float = 1.0        # The backgrounds' sinusoids' amplitudes (0: gradient only).
  speed_scale: float = 1.0       # Every object's velocity in every shot.
  size_scale: float = 1.0        # Every object's radius in every shot (then at most 0.4).
  hue_levels: int = 0            # > 0: every background hue rounded to one of this many.
  saturation_scale: float = 1.0  # The backgrounds' saturation (0: grey gradients).


WORLD = RenderOptions()
_in_force = WORLD


def render_options() -> RenderOptions:
  """The options everything renders with now: `WORLD` outside `rendering_with`."""
  return _in_force


@contextlib.contextmanager
def rendering_with(options: RenderOptions) -> Iterator[RenderOptions]:
  """Renders everything inside the block (videos, datasets, the held-out tasks) with
  `options`; the world again afterwards."""
  global _in_force
  before, _in_force = _in_force, options
  try:
    yield options
  finally:
    _in_force = before


# ---------------------------------------------------------------------------------------
# Scene elements and their random distributions (shared with `synthetic_tasks.py`).


def _hsv(h: float, s: float, v: float) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _background_hsv(h: float, s: float, v: float, options: RenderOptions) -> np.ndarray:
  """A background colour as the options in force render it (`_hsv` under `WORLD`)."""
  if options.hue_levels:
    h = round(options.hue_levels * (h % 1.0)) / options.hue_levels
  return _hsv(h, s * options.saturation_scale, v)


@dataclasses.dataclass(frozen=True)
class Appearance:
  """What an instance looks like; drawn independently of its class."""
  cls: int
  colour: np.ndarray         # [3] RGB in [0, 1]
  stripe_colour: np.ndarray  # [3] a lighter or darker shade of `colour`
  stripe: tuple              # (cycles per unit radius, direction, phase)


def sample_appearance(rng: np.random.Generator, cls: int) -> Appearance:
  # Version 2 drew a hue and a saturation here; version 3 still draws them, so that every
  # later draw (and with it every shot, box, label and trajectory) is version 2's, and
  # keeps only the value: objects are grey (the module docstring says why).
  rng.random(), rng.uniform(0.35, 1.0)
  colour = np.full(3, rng.uniform(0.45, 1.0))
  if rng.random() < 0.5:
    shade = colour * rng.uniform(0.55, 0.85)
  else:
    shade = colour + (1 - colour) * rng.uniform(0.25, 0.5)
  stripe = (rng.uniform(0.5, 1.5), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi))
  return Appearance(int(cls), colour, shade, stripe)


@dataclasses.dataclass(frozen=True)
class Sprite:
  """One instance placed in one image (coordinates are fractions of the image side)."""
  appearance: Appearance
  cy: float
  cx: float
  radius: float  # of the shape's unit circle
  angle: float   # radians


@dataclasses.dataclass(frozen=True)
class Background:
  """A smooth gradient plus low-frequency sinusoids on an infinite world plane."""
  colours: np.ndarray    # [2, 3] ends of the gradient
  direction: np.ndarray  # [2] (y, x) gradient steepness per world unit
  freqs: np.ndarray      # [K, 2] (y, x) cycles per world unit
  phases: np.ndarray     # [K]
  amps: np.ndarray       # [K, 3] per-channel amplitude of each sinusoid


def turn_hue(bg: Background, angle: float, options: RenderOptions | None = None) -> Background:
  """`bg` with both ends of its gradient turned round the hue circle by `angle` (in turns);
  their saturation and value, and the waves, are unchanged (`options`: those in force)."""
  options = options or _in_force
  colours = [colorsys.rgb_to_hsv(*c) for c in bg.colours]
  return dataclasses.replace(bg, colours=np.stack(
      [_background_hsv(h + angle, s, v, options) for h, s, v in colours]))


def sample_background(rng: np.random.Generator, num_waves: int = 6,
                      options: RenderOptions | None = None) -> Background:
  """A video's (or a held-out image's) background; `options`: those in force."""
  options = options or _in_force
  hue = rng.random()
  colours = np.stack([_background_hsv(hue, rng.uniform(0.1, 0.6), rng.uniform(0.25, 0.85),
                                      options),
                      _background_hsv(hue + rng.normal(0, 0.15), rng.uniform(0.1, 0.6),
                                      rng.uniform(0.25, 0.85), options)])
  a = rng.uniform(0, 2 * np.pi)
  direction = np.array([np.sin(a), np.cos(a)]) * rng.uniform(0.5, 2.0)
  b = rng.uniform(0, 2 * np.pi, num_waves)
  f = rng.uniform(0.5, 3.0, num_waves)
  freqs = np.stack([np.sin(b), np.cos(b)], axis=1) * f[:, None]
  amps = rng.normal(0, 0.05, (num_waves, 3)) / np.sqrt(f)[:, None] * options.wave_scale
  return Background(colours, direction, freqs, rng.uniform(0, 2 * np.pi, num_waves), amps)


@dataclasses.dataclass(frozen=True)
class Camera:
  centre: np.ndarray  # [2] world (y, x) seen at the image centre at t = 0
  zoom: float         # image sides per world unit; also scales the objects of a shot
  pan: np.ndarray     # [2] world units per second


def sample_camera(rng: np.random.Generator) -> Camera:
  return Camera(rng.uniform(-1, 1, 2), float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))),
                rng.normal(0, 0.015, 2))


@dataclasses.dataclass(frozen=True)
class Lighting:
  contrast: float
  brightness: float
  tint: np.ndarray  # [3] per-channel gain


def sample_lighting(rng: np.random.Generator) -> Lighting:
  return Lighting(rng.uniform(0.7, 1.25), rng.normal(0, 0.07), rng.uniform(0.85, 1.15, 3))


# ---------------------------------------------------------------------------------------
# Rendering.


def render_background(bg: Background, camera: Camera, t: float, size: int) -> np.ndarray:
  """[size, size, 3] float image of the world plane seen by `camera` at time t (seconds)."""
  g = ((np.arange(size) + 0.5) / size - 0.5) / camera.zoom
  ys = camera.centre[0] + camera.pan[0] * t + g
  xs = camera.centre[1] + camera.pan[1] * t + g
  ramp = 0.5 + 0.5 * np.tanh(bg.direction[0] * ys[:, None] + bg.direction[1] * xs[None, :])
  image = bg.colours[0] + ramp[..., None] * (bg.colours[1] - bg.colours[0])
  # sin(a + b) = sin(a) cos(b) + cos(a) sin(b): the waves are separable in y and x, so they
  # cost one small matrix product instead of K sines per pixel.
  py = 2 * np.pi * bg.freqs[:, 0, None] * ys[None, :] + bg.phases[:, None]  # [K, H]
  px = 2 * np.pi * bg.freqs[:, 1, None] * xs[None, :]                       # [K, W]
  left = np.concatenate([np.sin(py), np.cos(py)])[:, :, None] * np.concatenate(
      [bg.amps, bg.amps])[:, None, :]                                         # [2K, H, 3]
  right = np.concatenate([np.cos(px), np.sin(px)])                          # [2K, W]
  waves = (left.reshape(len(left), -1).T @ right).reshape(size, 3, size)
  return image + waves.transpose(0, 2, 1)


@dataclasses.dataclass(frozen=True)
class View:
  """What is visible of one sprite in a rendered image."""
  visible: float     # visible fraction of the whole shape's area, in [0, 1]
  box: tuple | None  # (ymin, xmin, ymax, xmax) of pixels more than half covered, in [0, 1]
  # bool [H, W]: the pixels more than half covered by the sprite's visible part, the ones
  # `box` spans (the instance masks of object discovery); None when `box` is. Masks of two
  # sprites never overlap: visible alphas sum to at most 1 per pixel (front to back, each
  # sprite gets alpha times what the ones in front left).
  mask: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)


def composite(background: np.ndarray, sprites: list[Sprite]
              ) -> tuple[np.ndarray, list[View], np.ndarray]:
  """Draws sprites (front to back) over a background; returns image, views, coverage.

  Front-to-back compositing with a transmittance map gives each sprite's visible part
  directly (what the boxes and the detector need) at the cost of one pass per sprite.
  """
  size = background.shape[0]
  image = np.zeros_like(background)
  trans = np.ones(background.shape[:2])
  views = []
  for sp in sprites:
    r, cy, cx = sp.radius * size, sp.cy * size, sp.cx * size
    y0, y1 = max(int(cy - r - 1), 0), min(int(math.ceil(cy + r + 1)), size)
    x0, x1 = max(int(cx - r - 1), 0), min(int(math.ceil(cx + r + 1)), size)
    if y0 >= y1 or x0 >= x1:
      views.append(View(0.0, None))
      continue
    dy = ((np.arange(y0, y1) + 0.5 - cy) / r)[:, None]
    dx = ((np.arange(x0, x1) + 0.5 - cx) / r)[None, :]
    c, s = math.cos(sp.angle), math.sin(sp.angle)
    u, v = c * dx + s * dy, c * dy - s * dx
    alpha = np.clip(0.5 - _SDF[sp.appearance.cls](u, v) * r, 0.0, 1.0)
    freq, direction, phase = sp.appearance.stripe
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (u * math.cos(direction)
                                                     + v * math.sin(direction)) + phase)
    a = sp.appearance
    colour = a.colour + stripes[..., None] * (a.stripe_colour - a.colour)
    t = trans[y0:y1, x0:x1]
    vis = alpha * t
    image[y0:y1, x0:x1] += vis[..., None] * colour
    t *= 1.0 - alpha  # A view into `trans`: later (deeper) sprites see less.
    rows, cols = np.nonzero(vis.max(axis=1) > 0.5)[0], np.nonzero(vis.max(axis=0) > 0.5)[0]
    box, mask = None, None
    if len(rows):
      box = ((y0 + rows[0]) / size, (x0 + cols[0]) / size,
             (y0 + rows[-1] + 1) / size, (x0 + cols[-1] + 1) / size)
      mask = np.zeros(trans.shape, bool)
      mask[y0:y1, x0:x1] = vis > 0.5   # The rule of the box, so its extent is the box.
    visible = min(float(vis.sum()) / (_AREA[a.cls] * r * r), 1.0)
    views.append(View(visible, box, mask))
  image += trans[..., None] * background
  return image, views, 1.0 - trans


def finish(image: np.ndarray, lighting: Lighting, noise: np.random.Generator,
           noise_std: float = 0.015) -> np.ndarray:
  """Applies lighting and sensor noise to a float image; returns uint8."""
  out = ((image - 0.5) * lighting.contrast + 0.5 + lighting.brightness) * lighting.tint
  out = out + noise_std * noise.standard_normal(out.shape, dtype=np.float32)
  return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='JPEG', quality=quality)
  return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))


# ---------------------------------------------------------------------------------------
# The imperfect detector.


@dataclasses.dataclass(frozen=True)
class Detector:
  """Error model of the simulated off-the-shelf detector (recorded in the manifest)."""
  miss_rate: float = 0.1
  min_visible: float = 0.35      # below this visible fraction an object is always missed
  min_pixels: float = 2.0        # ... and when its visible box is thinner than this
  jitter: float = 0.05           # std of each box side, relative to the box size
  label_noise: float = 0.1
  false_positives: float = 0.4   # mean number per frame (Poisson)
  max_boxes: int = 8


DETECTOR = Detector()


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A simulated image classifier whose soft labels the distillation ablation learns from
  (Romijnders et al., Table 1 "Distilling from ImageNet": frame-level soft labels
  of a classifier). Its logit for class c grows with the fraction of the frame that
  visible objects of class c cover; Gaussian noise makes it imperfect."""
  gain: float = 30.0
  noise: float = 0.5


TEACHER = Teacher()


def classify(classes: list[int], sprites: list, views: list[View], rng: np.random.Generator,
             teacher: Teacher = TEACHER) -> np.ndarray:
  """The teacher's probabilities [NUM_CLASSES] for one frame."""
  logits = rng.normal(0, teacher.noise, NUM_CLASSES)
  for cls, sprite, view in zip(classes, sprites, views):
    logits[cls] += teacher.gain * view.visible * _AREA[cls] * sprite.radius ** 2
  p = np.exp(logits - logits.max())
  return (p / p.sum()).astype(np.float32)


def detect(classes: list[int], views: list[View], size: int, rng: np.random.Generator,
           det: Detector = DETECTOR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Simulated detections for one frame: boxes [n, 4] float32, labels int64, scores."""
  found = []
  for cls, view in zip(classes, views):
    if view.box is None or view.visible < det.min_visible:
      continue
    b = np.array(view.box)
    hw = np.array([b[2] - b[0], b[3] - b[1]] * 2)
    if min(hw) * size < det.min_pixels or rng.random() < det.miss_rate:
      continue
    b = np.clip(b + rng.normal(0, det.jitter, 4) * hw, 0.0, 1.0)
    b = np.array([min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])])
    score = 0.3 + 0.65 * view.visible + rng.normal(0, 0.08)
    label = cls
    if rng.random() < det.label_noise:
      label = (cls + int(rng.integers(1, NUM_CLASSES))) % NUM_CLASSES
      score *= 0.8  # Confusions tend to come with lower confidence.
    found.append((min(max(score, 0.01), 1.0), label, b))
  for _ in range(rng.poisson(det.false_positives)):
    c, hw = rng.uniform(0, 1, 2), rng.uniform(0.05, 0.35, 2)
    b = np.clip(np.concatenate([c - hw / 2, c + hw / 2]), 0.0, 1.0)
    found.append((0.01 + 0.34 * rng.beta(1, 3), int(rng.integers(NUM_CLASSES)), b))
  found.sort(key=lambda f: -f[0])
  found = found[:det.max_boxes]
  return (np.array([f[2] for f in found], np.float32).reshape(-1, 4),
          np.array([f[1] for f in found], np.int64),
          np.array([f[0] for f in found], np.float32))


# ---------------------------------------------------------------------------------------
# Videos.


def _bounce(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Folds positions into [lo, hi] like a ball bouncing between walls (closed form)."""
  span = hi - lo
  x = np.mod(x - lo, 2 * span)
  return lo + np.where(x > span, 2 * span - x, x)


@dataclasses.dataclass(frozen=True)
class _Motion:
  """One cast member in one shot; a closed-form function of time (seconds)."""
  instance: int
  pos: np.ndarray  # [2] (y, x) at t = 0
  vel: np.ndarray  # [2] per second
  angle: float
  spin: float      # radians per second
  radius: float
  pulse: float     # relative amplitude of the size oscillation
  period: float    # seconds
  phase: float

  def at(self, t: float, appearance: Appearance) -> Sprite:
    y, x = _bounce(self.pos + self.vel * t, -0.05, 1.05)
    r = self.radius * (1 + self.pulse * math.sin(2 * math.pi * t / self.period + self.phase))
    return Sprite(appearance, float(y), float(x), r, self.angle + self.spin * t)


@dataclasses.dataclass(frozen=True)
class _Shot:
  duration: int  # seconds
  camera: Camera
  lighting: Lighting
  motions: tuple  # of _Motion, front to back
  background: Background  # the video's, in the shot's own palette (version 4)


def _plan_video(rng: np.random.Generator, palette: np.random.Generator,
                options: RenderOptions | None = None) -> tuple[list[Appearance], list[_Shot]]:
  """Draws everything about a video that does not depend on the frame rate; `palette`
  draws the shots' hue angles (its own stream, so that every other draw is version 3's);
  `options`: those in force."""
  options = options or _in_force
  background = sample_background(rng, options=options)
  theme = rng.choice(NUM_CLASSES, int(rng.integers(2, 4)), replace=False)
  n_cast = int(rng.integers(max(2, len(theme)), MAX_CAST + 1))
  classes = np.concatenate([theme, rng.choice(theme, n_cast - len(theme))])
  cast = [sample_appearance(rng, c) for c in classes]
  sizes = rng.uniform(0.09, 0.2, n_cast)
  shots = []
  for _ in range(int(rng.integers(3, 8))):
    camera = sample_camera(rng)
    present = rng.permutation(n_cast)[:int(rng.integers(1, n_cast + 1))]  # Order = depth.
    motions = []
    for i in present:
      heading = rng.uniform(0, 2 * np.pi)
      motions.append(_Motion(
          instance=int(i), pos=rng.uniform(0.1, 0.9, 2),
          vel=(np.array([np.sin(heading), np.cos(heading)]) * rng.uniform(0.01, 0.08)
               * options.speed_scale),
          angle=rng.uniform(0, 2 * np.pi), spin=rng.uniform(-0.5, 0.5),
          radius=min(min(sizes[i] * camera.zoom, 0.3) * options.size_scale, 0.4),
          pulse=rng.uniform(0, 0.2),
          period=rng.uniform(5, 20), phase=rng.uniform(0, 2 * np.pi)))
    shots.append(_Shot(int(rng.integers(4, 15)), camera, sample_lighting(rng), tuple(motions),
                       turn_hue(background, palette.random(), options)))
  return cast, shots


def render_video_with_truth(index: int, *, seed: int, image_size: int, fps: float = 1.0
                            ) -> tuple[records.Video, list[dict]]:
  """`render_video` plus per-frame ground truth (for tests and diagnostics).

  The truth of a frame: 'boxes' [m, 4] visible extents and 'classes' [m] of every object
  with any pixel more than half covered (front to back), their 'visible' fractions, their
  instance 'masks' bool [m, H, W] (the pixels more than half covered by each object's
  visible part: `View.mask`, disjoint), and 'coverage' [H, W], the fraction of each pixel
  covered by objects.
  """
  if not fps > 0:
    raise ValueError(f'fps must be positive, got {fps}')
  cast, shots = _plan_video(np.random.default_rng([seed, index, 0]),
                            np.random.default_rng([seed, index, 2]))
  noise = np.random.default_rng([seed, index, 1])
  frames, shot_ids, boxes, labels, scores, soft, truth = [], [], [], [], [], [], []
  for s, shot in enumerate(shots):
    for k in range(max(1, int(round(shot.duration * fps)))):
      t = k / fps
      sprites = [m.at(t, cast[m.instance]) for m in shot.motions]
      rgb, views, coverage = composite(
          render_background(shot.background, shot.camera, t, image_size), sprites)
      frames.append(encode_jpeg(finish(rgb, shot.lighting, noise)))
      classes = [sp.appearance.cls for sp in sprites]
      b, l, c = detect(classes, views, image_size, noise)
      soft.append(classify(classes, sprites, views, noise))
      boxes.append(b)
      labels.append(l)
      scores.append(c)
      shot_ids.append(s)
      seen = [i for i, v in enumerate(views) if v.box is not None]
      truth.append({'boxes': np.array([views[i].box for i in seen]).reshape(-1, 4),
                    'classes': np.array([classes[i] for i in seen], np.int64),
                    'visible': np.array([views[i].visible for i in seen]),
                    'masks': np.array([views[i].mask for i in seen], bool).reshape(
                        -1, image_size, image_size),
                    'coverage': coverage})
  video = records.Video(
      video_id=f'synthetic-{seed}-{index:07d}', fps=float(fps), frames=frames,
      timestamps=np.arange(len(frames), dtype=np.float64) / fps,
      shot_ids=np.array(shot_ids, np.int64), boxes=boxes, labels=labels, scores=scores,
      soft_labels=np.stack(soft))
  return video, truth


def render_video(index: int, *, seed: int, image_size: int, fps: float = 1.0) -> records.Video:
  """Renders video `index` of the world seeded by `seed` (see the module docstring)."""
  return render_video_with_truth(index, seed=seed, image_size=image_size, fps=fps)[0]


# ---------------------------------------------------------------------------------------
# Datasets.


def _video_counts(v: records.Video) -> dict:
  return {'videos': 1, 'shots': len(np.unique(v.shot_ids)), 'frames': len(v.frames),
          'boxes': int(sum(len(l) for l in v.labels))}


def _write_shard_job(job: tuple) -> tuple[int, dict]:
  """Renders and writes one shard (runs in a worker process when num_workers > 1)."""
  k, path, indices, seed, image_size, fps = job
  videos = [render_video(i, seed=seed, image_size=image_size, fps=fps) for i in indices]
  records.write_shard(path, videos)
  counts = [_video_counts(v) for v in videos]
  return k, {key: sum(c[key] for c in counts) for key in counts[0]}


def _count_shard(path: str) -> dict:
  """Counts a shard written earlier: TFRecord framing read directly, protos parsed."""
  import tensorflow as tf  # Only for the protobuf classes; no TF ops run here.
  counts = {'videos': 0, 'shots': 0, 'frames': 0, 'boxes': 0}
  with open(path, 'rb') as f:
    while header := f.read(12):  # uint64 length, uint32 masked crc of the length.
      data = f.read(struct.unpack('<Q', header[:8])[0])
      f.read(4)  # Masked crc of the data.
      lists = tf.train.SequenceExample.FromString(data).feature_lists.feature_list
      counts['videos'] += 1
      counts['frames'] += len(lists['image/encoded'].feature)
      counts['shots'] += len({x.int64_list.value[0] for x in lists['shot/id'].feature})
      counts['boxes'] += sum(len(x.int64_list.value) for x in lists['object/label'].feature)
  return counts


def build_dataset(folder: str, *, num_videos: int, image_size: int, seed: int,
                  fps: float = 1.0, videos_per_shard: int = 64,
                  num_workers: int = 1) -> records.Manifest:
  """Writes `num_videos` synthetic videos as shards plus a manifest into `folder`.

  Restartable: shards already present (they are written atomically) are kept, missing
  ones are rendered, and the manifest, which marks the dataset complete, comes last.
  Not meant for several builders on one folder at once: let one process build it.
  """
  if num_videos < 1 or videos_per_shard < 1:
    raise ValueError(f'need num_videos >= 1 and videos_per_shard >= 1, got '
                     f'{num_videos} and {videos_per_shard}')
  generator = {'name': 'vivi.input.synthetic', 'version': GENERATOR_VERSION, 'seed': seed,
               'num_videos': num_videos, 'image_size': image_size, 'fps': float(fps),
               'videos_per_shard': videos_per_shard, 'jpeg_quality': JPEG_QUALITY,
               'detector': dataclasses.asdict(DETECTOR),
               'teacher': dataclasses.asdict(TEACHER)}
  if _in_force != WORLD:   # A pilot world (the module docstring): never taken for the world.
    generator['render_options'] = dataclasses.asdict(_in_force)
  if os.path.exists(os.path.join(folder, records.MANIFEST)):
    old = records.Manifest.read(folder).extra.get('generator')
    if old != generator:
      raise ValueError(f'{folder} holds a different dataset ({old}); '
                       f'refusing to mix it with {generator}')
  os.makedirs(folder, exist_ok=True)
  n = -(-num_videos // videos_per_shard)
  names = [records.shard_name(k, n) for k in range(n)]
  jobs = [(k, os.path.join(folder, names[k]),
           range(k * videos_per_shard, min((k + 1) * videos_per_shard, num_videos)),
           seed, image_size, float(fps))
          for k in range(n) if not os.path.exists(os.path.join(folder, names[k]))]
  per_shard, start = {}, time.time()

  def progress(done):  # A line per shard: the build takes minutes on 2 cores.
    for k, counts in done:
      per_shard[k] = counts
      print(f'  synthetic world: shard {len(per_shard)} of {len(jobs)} written '
            f'({time.time() - start:.0f} s)', flush=True)

  if num_workers > 1 and len(jobs) > 1:
    # Forks: call this from a fresh process (the command line below; `ensure_dataset` runs
    # it as a subprocess), not from one that already runs JAX or TensorFlow threads.
    with multiprocessing.get_context('fork').Pool(min(num_workers, len(jobs))) as pool:
      progress(pool.imap_unordered(_write_shard_job, jobs))
  else:
    progress(map(_write_shard_job, jobs))
  for k in range(n):
    if k not in per_shard:
      per_shard[k] = _count_shard(os.path.join(folder, names[k]))
  counts = {key: int(sum(c[key] for c in per_shard.values()))
            for key in ('videos', 'shots', 'frames', 'boxes')}
  manifest = records.Manifest(label_map=list(CLASS_NAMES), fps=float(fps), detector='synthetic',
                              counts=counts, shards=names, extra={'generator': generator},
                              shard_videos=[int(per_shard[k]['videos']) for k in range(n)],
                              soft_label_map=list(CLASS_NAMES))
  manifest.write(folder)
  return manifest


def dataset_folder(cache_dir: str, *, num_videos: int, image_size: int, seed: int,
                   fps: float = 1.0) -> str:
  return os.path.join(cache_dir, f'videos-v{GENERATOR_VERSION}-n{num_videos}-s{image_size}'
                                 f'-seed{seed}-fps{fps:g}')


def ensure_dataset(cache_dir: str, *, num_videos: int, image_size: int, seed: int,
                   fps: float = 1.0, num_workers: int = 1) -> str:
  """Returns the folder of this synthetic dataset, building (or finishing) it if needed.

  With several workers the build runs in a fresh subprocess (`python -m
  vivi.input.synthetic`), so that its worker processes never fork a caller that runs JAX.
  The cache holds only the world: under a pilot's `rendering_with` this raises.
  """
  if _in_force != WORLD:
    raise ValueError(f'the dataset cache holds only the world; build a pilot world '
                     f'({_in_force}) with build_dataset into a folder of its own')
  folder = dataset_folder(cache_dir, num_videos=num_videos, image_size=image_size,
                          seed=seed, fps=fps)
  if os.path.exists(os.path.join(folder, records.MANIFEST)):
    return folder
  if num_workers > 1:
    subprocess.run([sys.executable, '-m', 'vivi.input.synthetic', '--out', folder,
                    f'--num_videos={num_videos}', f'--image_size={image_size}',
                    f'--seed={seed}', f'--fps={fps}', f'--workers={num_workers}'], check=True)
  else:
    build_dataset(folder, num_videos=num_videos, image_size=image_size, seed=seed, fps=fps)
  return folder


def main(argv: list[str] | None = None) -> None:
  """The command line: `python -m vivi.input.synthetic --out DIR --num_videos N ...`."""
  from vivi import cli
  parser = cli.ArgumentParser(description='Builds a synthetic video dataset.')
  parser.add_argument('--out', required=True, help='dataset folder to write')
  parser.add_argument('--num_videos', type=int, required=True)
  parser.add_argument('--image_size', type=int, required=True, help='square frame side, px')
  parser.add_argument('--seed', type=int, required=True)
  parser.add_argument('--fps', type=float, default=1.0, help='frames per second of video')
  parser.add_argument('--videos_per_shard', type=int, default=64)
  parser.add_argument('--workers', type=int, default=1, help='processes (one per shard)')
  args = parser.parse_args(argv)
  cli.writable_folder(args.out, '--out')
  start = time.time()
  manifest = build_dataset(
      args.out, num_videos=args.num_videos, image_size=args.image_size, seed=args.seed,
      fps=args.fps, videos_per_shard=args.videos_per_shard, num_workers=args.workers)
  counts = ', '.join(f'{k}={v}' for k, v in manifest.counts.items())
  print(f'{args.out}: {len(manifest.shards)} shards, {counts} ({time.time() - start:.1f} s)')


if __name__ == '__main__':
  from vivi import cli
  cli.script(main)
