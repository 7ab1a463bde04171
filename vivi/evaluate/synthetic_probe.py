"""Linear probes of the frozen encoder on the synthetic world's held-out tasks.

The training loop runs this on the encoder at initialisation and every
`config.probe.every_steps`, so every run reports what its representation is worth. Task
images are rendered once (deterministically from `config.probe.seed`), features are the
pooled representation ('pre_logits') with BatchNorm in inference mode. It also reports the
object nearest-neighbour diagnostic of Romijnders et al. Table 2 ('object_nn', `object_nn.py`).
"""

from __future__ import annotations

import ml_collections

from vivi.evaluate import linear_probe, object_nn
from vivi.input import synthetic_tasks
from vivi.models import video_model


class SyntheticProbe:

  def __init__(self, config: ml_collections.ConfigDict, model, mesh):
    p = config.probe
    self.mesh = mesh
    self.tasks = {}
    for task in p.tasks:
      train = synthetic_tasks.render_downstream(task, 'train', p.num_train, image_size=p.image_size,
                                          seed=p.seed)
      test = synthetic_tasks.render_downstream(task, 'test', p.num_test, image_size=p.image_size,
                                         seed=p.seed)
      self.tasks[task] = (train, test, synthetic_tasks.DOWNSTREAM_TASKS[task])
    encode = lambda variables, images: model.apply(
        variables, images, method=video_model.VideoModel.encode)['pre_logits']
    self.encode = linear_probe.jit_encoder(encode, mesh)
    self.object_nn = None
    if p.nn_videos:  # 0 (and no tasks) turns the probe off: quick runs, tests.
      self.object_nn = object_nn.ObjectNearestNeighbour(
          model, mesh, num_videos=p.nn_videos, frames_per_video=p.nn_frames_per_video,
          image_size=p.image_size, seed=p.seed)

  def __call__(self, state) -> dict[str, float]:
    """Test accuracy of each task's probe, and the 'object_nn' fraction."""
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    results = {}
    for task, ((x_tr, y_tr), (x_te, y_te), num_classes) in self.tasks.items():
      f_tr = linear_probe.extract_features(self.encode, variables, x_tr, self.mesh)
      f_te = linear_probe.extract_features(self.encode, variables, x_te, self.mesh)
      results[task] = linear_probe.probe_accuracy(f_tr, y_tr, f_te, y_te, num_classes)
    if self.object_nn is not None:
      results['object_nn'] = self.object_nn(state)
    return results
