"""The object nearest-neighbour diagnostic of Romijnders et al. (Table 2).

For boxes of held-out frames, the fraction whose nearest neighbour in representation space
(block-4 feature column at the box centre, L2-normalised, the box itself excluded) carries
the same detector class label (`same_class_fraction`). The object level is meant to raise it.
A video's boxes are mostly the same few instances seen in several frames, so a neighbour
from the box's own video can agree through the instance (its colour) rather than the class;
`same_class_fraction_other_videos` takes the nearest neighbour among other videos' boxes only
(chance: the sum of squared class shares, about 0.1). On the synthetic world the object level
raises both fractions above VIVI's, run for run; against its own encoder at initialisation
its gain is mostly in the second, since an untrained encoder already matches a box to the
same instance in another frame of its video, which the first rewards.

The held-out set is rendered from the synthetic world with a seed no training set uses:
frames at the probe's resolution with their detector annotations, filtered by the training
pipeline's own filter (`objects.select_boxes`: score >= 0.05, top 5 per frame).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vivi.evaluate import knn, linear_probe
from vivi.input import objects, records, synthetic
from vivi.models import box_features, video_model
from vivi.objectives import losses

HELD_OUT_SEED_OFFSET = 10_007  # Keeps the held-out videos apart from any training seed.


def held_out_boxes(num_videos: int, frames_per_video: int, *, image_size: int,
                   seed: int) -> dict[str, np.ndarray]:
  """Frames uint8 [N, S, S, 3] with 'boxes' [N, B, 4], 'labels' [N, B], 'valid' [N, B] and
  'videos' [N] (the held-out video of each frame)."""
  cfg = objects.ObjectsConfig(num_classes=synthetic.NUM_CLASSES)
  frames, kept, videos = [], [], []
  for i in range(num_videos):
    video = synthetic.render_video(i, seed=seed + HELD_OUT_SEED_OFFSET, image_size=image_size)
    step = max(1, len(video.frames) // frames_per_video)
    index = list(range(0, len(video.frames), step)[:frames_per_video])
    # Through the record format and the training pipeline's filter, as training sees boxes.
    _, parsed = tf.io.parse_single_sequence_example(
        records.to_sequence_example(video).SerializeToString(), *records.parse_features())
    kept.append(objects.select_boxes(parsed, tf.constant(index), cfg, tf.constant([0, 0])))
    frames += [synthetic.decode_jpeg(video.frames[f]) for f in index]
    videos += [i] * len(index)
  column = lambda key: np.concatenate([k[key].numpy() for k in kept])
  return {'frames': np.stack(frames), 'boxes': column('boxes'),
          'labels': column('box_labels'), 'valid': column('box_valid'),
          'videos': np.asarray(videos)}


class ObjectNearestNeighbour:
  """Computes the diagnostic for an encoder's variables; the held-out set is rendered once."""

  def __init__(self, encoder, mesh, *, num_videos: int, frames_per_video: int,
               image_size: int, seed: int):
    self.data = held_out_boxes(num_videos, frames_per_video, image_size=image_size, seed=seed)
    self.mesh = mesh

    def encode(variables, inputs):
      images = video_model.normalize_images(inputs['frames'])
      grid = encoder.apply(variables, images, train=False)['block4']
      return box_features.gather(grid, inputs['boxes'])

    self.encode = linear_probe.jit_encoder(encode, mesh)

  def __call__(self, variables: dict) -> dict[str, float]:
    """Both fractions for the encoder's {'params', 'batch_stats'}."""
    feats = linear_probe.extract_features(
        self.encode, variables, {'frames': self.data['frames'], 'boxes': self.data['boxes']},
        self.mesh)
    feats = feats.reshape(-1, feats.shape[-1])
    feats = knn.l2_normalize(feats)
    labels, valid = self.data['labels'].reshape(-1), self.data['valid'].reshape(-1)
    videos = np.repeat(self.data['videos'], self.data['labels'].shape[1])
    return {'same_class_fraction': float(losses.nearest_neighbour_agreement(
                feats, labels, valid)),
            'same_class_fraction_other_videos': float(losses.nearest_neighbour_agreement(
                feats, labels, valid, videos))}
