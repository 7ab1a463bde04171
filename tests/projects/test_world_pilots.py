"""projects/synthetic_world/world_pilots.py: the pilot worlds change what their docstring
says and nothing else, through the world's public hook (synthetic.rendering_with)."""

import sys

import numpy as np
import pytest

from projects.synthetic_world import world_pilots
from vivi.input import synthetic as world


def test_no_hue_greys_the_gradient_and_keeps_its_value():
  colours = world.sample_background(np.random.default_rng(0)).colours
  with world.rendering_with(world_pilots.VARIANTS['no_hue']):
    grey = world.sample_background(np.random.default_rng(0)).colours
  np.testing.assert_allclose(grey, np.repeat(colours.max(1, keepdims=True), 3, 1), atol=1e-9)
  assert world.render_options() == world.WORLD


def test_a_variant_keeps_every_draw_of_the_world():
  """fast_objects: the same shots, cast and trajectories' starts, only the speed x4."""
  plan = lambda: world._plan_video(  # pylint: disable=protected-access
      np.random.default_rng([0, 3, 0]), np.random.default_rng([0, 3, 2]))
  cast, shots = plan()
  with world.rendering_with(world_pilots.VARIANTS['fast_objects']):
    fast_cast, fast_shots = plan()
  assert [a.cls for a in cast] == [a.cls for a in fast_cast]
  for shot, fast in zip(shots, fast_shots, strict=True):
    for m, f in zip(shot.motions, fast.motions, strict=True):
      np.testing.assert_array_equal(m.pos, f.pos)
      np.testing.assert_allclose(f.vel, 4 * m.vel)
      assert (m.radius, m.angle) == (f.radius, f.angle)


def test_dilate_grows_a_mask_by_r_pixels_in_every_direction():
  mask = np.zeros((9, 9), bool)
  mask[4, 4] = mask[0, 8] = True
  grown = world_pilots._dilate(mask, 2)  # pylint: disable=protected-access
  ys, xs = np.mgrid[:9, :9]
  expected = ((abs(ys - 4) <= 2) & (abs(xs - 4) <= 2)) | ((ys <= 2) & (xs >= 6))
  np.testing.assert_array_equal(grown, expected)


def test_object_contrast_is_lower_on_grey_backgrounds():
  n, median, low, luminance = world_pilots.object_contrast(0, num_videos=3, image_size=32)
  assert n > 20 and 0 < luminance <= median < 3 ** 0.5 and 0 <= low < 1
  with world.rendering_with(world_pilots.VARIANTS['no_hue']):
    n_grey, median_grey, _, _ = world_pilots.object_contrast(0, num_videos=3, image_size=32)
  assert n_grey == n and median_grey < median


def test_flags_meant_for_evaluate_are_errors_without_evaluate(monkeypatch, capsys):
  monkeypatch.setattr(sys, 'argv', ['world_pilots.py', '--variant=no_hue',
                                    '--config=configs/evaluate.py:probe'])
  with pytest.raises(SystemExit):
    world_pilots.main()
  assert 'unrecognized arguments: --config=configs/evaluate.py:probe' in capsys.readouterr().err
