"""Which sampler a config trains with (`config.input.sampler`), and the shapes it yields.

    'vivi'    video -> shots -> frames (+ boxes, soft labels)   vivi_sampler.py
    'vince'   R2V2 frames, k anchors + k positives per video     vince_sampler.py
    'vito'    n views drawn marginally from a 2.56 s clip        vito_sampler.py
    'detcon'  two views of a frame + aligned FH segment masks    detcon_sampler.py
    'none'    no videos: labelled images only (configs/supervised.py, the supervised
              reference of the learning benchmark)

`example_spec` gives the per-video arrays of each (what the model is initialised with);
`build` makes the sampler from the config and the dataset's manifest.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from vivi import errors
from vivi.input import augment, objects, records

SAMPLERS = ('vivi', 'vince', 'vito', 'detcon', 'none')


def sampler_name(config: ml_collections.ConfigDict) -> str:
  """`config.input.sampler`, checked against the known samplers."""
  name = config.input.sampler
  if name not in SAMPLERS:
    raise errors.ConfigError(f'config.input.sampler={name!r}; known: {SAMPLERS} '
                             '(vivi/input/samplers.py)')
  return name


def example_spec(config: ml_collections.ConfigDict) -> dict[str, tuple[tuple, type]]:
  """{key: (shape, dtype)} of one video's part of the batch."""
  i = config.input
  image = (i.image_size, i.image_size, 3)
  name = sampler_name(config)
  if name == 'none':
    return {}
  if name == 'vince':
    return {'frames': ((i.frames_per_video,) + image, np.uint8),
            'target_frames': ((i.frames_per_video,) + image, np.uint8)}
  if name == 'vito':
    return {'frames': ((i.num_views,) + image, np.uint8)}
  if name == 'detcon':
    return {'frames': ((2,) + image, np.uint8),
            'segments': ((2, i.image_size, i.image_size), np.int32),
            'mask_valid': ((i.num_masks,), bool)}
  frames = (i.num_shots, i.frames_per_shot)
  spec = {'frames': (frames + image, np.uint8)}
  if i.rotate:
    spec['rotation'] = (frames, np.int32)
  if i.max_boxes:
    spec['boxes'] = (frames + (i.max_boxes, 4), np.float32)
    spec['box_labels'] = (frames + (i.max_boxes,), np.int32)
    spec['box_valid'] = (frames + (i.max_boxes,), bool)
  if i.soft_labels:
    if 'distillation' not in config.objectives:
      raise errors.ConfigError('input.soft_labels=True is for the distillation objective; add it')
    spec['soft_labels'] = (frames + (config.objectives.distillation.num_classes,), np.float32)
  return spec


def augmentations(config: ml_collections.ConfigDict, num_views: int = 1
                  ) -> tuple[augment.AugmentConfig, ...]:
  """`config.input.augment`: 'inception' (VIVI, Romijnders et al.), 'moco_v2' (VINCE's
  ResNet-50 recipe) or 'byol' (VITO, DetCon; asymmetric views)."""
  i = config.input
  kind = i.augment
  if kind == 'inception':
    return (augment.AugmentConfig(image_size=i.image_size, crop_area=tuple(i.crop_area),
                                  flip=i.flip, color=i.color),)
  if kind == 'moco_v2':
    return (augment.moco_v2(i.image_size, crop_area=tuple(i.crop_area)),)
  if kind == 'byol':
    return tuple(augment.byol(i.image_size, view=v, crop_area=tuple(i.crop_area))
                 for v in range(num_views))
  raise errors.ConfigError(f"config.input.augment={kind!r}; known: 'inception', 'moco_v2', 'byol'")


def build(config: ml_collections.ConfigDict, manifest: records.Manifest, folder: str):
  """The sampler of `config.input` for the dataset in `folder`."""
  i = config.input
  name = sampler_name(config)
  if name == 'none':
    return None
  if name == 'vince':
    from vivi.input import vince_sampler
    return vince_sampler.VinceSampler(
        num_frames=i.num_frames, gap_seconds=i.gap_seconds, frames_per_video=i.frames_per_video,
        same_frame=i.same_frame, augment=augmentations(config)[0])
  if name == 'vito':
    from vivi.input import vito_sampler
    vito_sampler.check_frame_rate(manifest.fps, i.clip_seconds, folder)
    return vito_sampler.VitoSampler(num_views=i.num_views, clip_seconds=i.clip_seconds,
                                    augment=augmentations(config, i.num_views))
  if name == 'detcon':
    from vivi.input import detcon_sampler, segments
    return detcon_sampler.DetconSampler(augment=augmentations(config, 2),
                                        num_masks=i.num_masks, fh=segments.FHConfig(**i.fh),
                                        masks=i.masks)
  from vivi.input import vivi_sampler
  boxes = None
  if i.max_boxes:
    if not manifest.label_map:
      raise errors.DatasetError(
          f'input.max_boxes={i.max_boxes}: the config trains on detector boxes, but {folder} '
          f'has none (its manifest has an empty label map: prepared with --detector none); '
          f'prepare it with a detector, or set input.max_boxes=0 without the object level')
    boxes = objects.ObjectsConfig(
        num_classes=len(manifest.label_map), max_boxes=i.max_boxes, min_score=i.min_box_score,
        random_boxes=i.random_boxes, random_labels=i.random_labels)
  if i.soft_labels and not manifest.soft_label_map:
    raise errors.DatasetError(f'input.soft_labels=True but {folder} has no soft labels (its '
                              'manifest lists no soft_label_map)')
  return vivi_sampler.ViviSampler(
      num_shots=i.num_shots, frames_per_shot=i.frames_per_shot, rotate=i.rotate,
      augment=augmentations(config)[0], objects=boxes,
      soft_label_classes=len(manifest.soft_label_map) if i.soft_labels else 0)
