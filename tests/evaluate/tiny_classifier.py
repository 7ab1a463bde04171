"""A tiny ImageNet classifier for the tests of the evaluators that score one (video
robustness, shape bias): the tiny encoder at random initialisation with a random 1,000-way
head over 'imagenet2012', saved as a classifier folder, and its predictions worked out by
hand from `Classifier.logits` on the frames read as the evaluators read them."""

import numpy as np

from configs import common
from vivi import classifier
from vivi import encoder as encoder_api

IMAGE_SIZE = 32


def save_tiny_classifier(out_dir: str, mesh, seed: int = 0) -> str:
  """The folder of a random classifier over ImageNet's 1,000 classes at 32 x 32 pixels. The
  head's scale spreads the logits so that the argmax depends on the image."""
  encoder = encoder_api.random_encoder(common.base('tiny').model, IMAGE_SIZE, seed, mesh=mesh)
  dim = np.asarray(encoder.features(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8))
                   ['pre_logits']).shape[-1]
  rng = np.random.default_rng(seed)
  head = {'kernel': rng.normal(scale=3.0, size=(dim, 1000)).astype(np.float32),
          'bias': np.zeros(1000, np.float32)}
  clf = classifier.make_classifier(encoder, head, {'label_space': classifier.IMAGENET,
                                                   'image_size': IMAGE_SIZE})
  return classifier.save_classifier(clf, out_dir)


def pan_frames(photo: np.ndarray, num_frames: int, size=(48, 64), step: int = 3
               ) -> list[np.ndarray]:
  """Consecutive 'frames' of a camera panning over a real photograph: crops of `size` moving
  `step` pixels right and down per frame."""
  h, w = size
  return [np.ascontiguousarray(photo[i * step:i * step + h, i * step:i * step + w, :3])
          for i in range(num_frames)]
