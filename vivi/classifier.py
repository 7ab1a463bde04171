"""An image classifier: an encoder and a linear head on its 'pre_logits', over a named label
space. What the ImageNet transfer evaluators write (linear evaluation of the frozen encoder,
full fine-tuning) and what the robustness and shape-bias evaluators read.

  from vivi import classifier
  clf = classifier.load_classifier('/tmp/eval/step_N/imagenet_linear/classifier')
  logits = clf.logits(images_uint8)                  # [N, 1000] float32

A classifier folder holds `variables/` (an orbax checkpoint of `finetune.classifier_variables`'
layout: {'params': {'encoder', 'head': {'kernel', 'bias'}}, 'batch_stats': {'encoder'}}) and
`classifier.json`: the encoder's architecture, the label space ('imagenet2012': the 1,000
classes in TFDS's order, which is the synset order of ImageNet's devkit), the image size
and preprocessing it was trained for, and its provenance. `load_classifier` also takes a
training workdir whose objectives include 'supervised' (configs/imagenet_finetune.py: the
training loop fine-tuning a pretrained encoder), reading its encoder and classifier head.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from vivi import checkpoint, errors, parallel
from vivi import encoder as encoder_api
from vivi.evaluate import finetune, linear_probe
from vivi.models import video_model

CLASSIFIER_JSON = 'classifier.json'
IMAGENET = 'imagenet2012'   # TFDS's label order: the devkit's synsets n01440764 ... n15075141.


@dataclasses.dataclass
class Classifier:
  """uint8 images [N, S, S, 3] -> logits [N, num_classes] (`logits`), BatchNorm in inference
  mode; `info` holds 'label_space', 'num_classes', 'image_size', 'model' and provenance."""
  module: finetune.Classifier
  variables: dict
  info: dict

  @property
  def num_classes(self) -> int:
    return int(self.module.num_classes)

  @property
  def image_size(self) -> int:
    return int(self.info['image_size'])

  @property
  def encoder(self) -> encoder_api.Encoder:
    """The classifier's encoder alone (fine-tuned, or the frozen one of a linear head)."""
    return encoder_api.Encoder(self.module.encoder, finetune.encoder_variables(self.variables),
                               {**self.info, 'input': encoder_api.INPUT})

  def logits(self, images: np.ndarray, mesh=None, batch_size: int = 256) -> np.ndarray:
    """float32 logits [N, num_classes] of uint8 images [N, S, S, 3]."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(f'Classifier.logits takes uint8 images [N, S, S, 3]; got {images.dtype} '
                       f'{images.shape}')
    mesh = mesh or parallel.make_mesh()
    if not len(images):
      return np.zeros((0, self.num_classes), np.float32)
    return linear_probe.extract_features(_compiled_logits(self.module, mesh), self.variables,
                                         images, mesh, batch_size)


@functools.lru_cache(maxsize=8)
def _compiled_logits(module: finetune.Classifier, mesh):
  return linear_probe.jit_encoder(
      lambda variables, images: module.apply(variables, images, train=False), mesh)


def make_classifier(encoder: encoder_api.Encoder, head: dict, info: dict) -> Classifier:
  """A classifier of `encoder` with the linear `head` {'kernel' [C, K], 'bias' [K]}; `info`
  must say 'label_space' and 'image_size' (provenance keys are kept as given)."""
  for key in ('label_space', 'image_size'):
    if key not in info:
      raise ValueError(f'classifier info needs {key!r}; got {sorted(info)}')
  num_classes = int(np.shape(head['bias'])[-1])
  variables = {'params': {'encoder': encoder.variables['params'],
                          'head': {'kernel': jnp.asarray(head['kernel'], jnp.float32),
                                   'bias': jnp.asarray(head['bias'], jnp.float32)}}}
  if encoder.variables.get('batch_stats'):
    variables['batch_stats'] = {'encoder': encoder.variables['batch_stats']}
  info = {**{k: v for k, v in encoder.info.items() if k not in ('input', 'input_dtype',
                                                               'input_range')},
          **info, 'num_classes': num_classes, 'model': dict(encoder.info['model'])}
  return Classifier(finetune.Classifier(encoder=encoder.module, num_classes=num_classes),
                    variables, info)


def save_classifier(clf: Classifier, out_dir: str) -> str:
  """Writes `clf` as a classifier folder (module docstring); returns its absolute path."""
  out_dir = os.path.abspath(out_dir)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.join(out_dir, 'variables'), clf.variables, force=True)
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, CLASSIFIER_JSON), 'w') as f:
      json.dump(clf.info, f, indent=1, default=str)
  return out_dir


def load_classifier(path: str, mesh=None, step: int | None = None,
                    image_size: int | None = None) -> Classifier:
  """A classifier folder (`save_classifier`), or a training workdir whose objectives include
  'supervised' (its latest checkpoint, or `step`; `image_size`, default the run's input
  size, is the size it is evaluated at). Replicated over `mesh`."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(os.path.join(path, CLASSIFIER_JSON)):
    return _load_folder(path, mesh)
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return _restore_workdir(path, step, mesh, image_size)
  raise errors.MissingPathError(
      f'{path} is not a classifier: it has neither {CLASSIFIER_JSON} (a folder the '
      f'imagenet_linear evaluator writes) nor checkpoints/ (a training workdir of '
      f'configs/imagenet_finetune.py)')


def _load_folder(path: str, mesh) -> Classifier:
  with open(os.path.join(path, CLASSIFIER_JSON)) as f:
    try:
      info = json.load(f)
    except ValueError as e:
      raise errors.PathError(f'{path}/{CLASSIFIER_JSON}: not valid JSON ({e})') from None
  module = finetune.Classifier(encoder=video_model.build_encoder(info['model']),
                               num_classes=int(info['num_classes']))
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0),
                                              jnp.zeros((1, 32, 32, 3), jnp.uint8)))
  variables = encoder_api.restore_variables(os.path.join(path, 'variables'), shapes, mesh)
  return Classifier(module, variables, info)


def _restore_workdir(workdir: str, step: int | None, mesh, image_size: int | None
                     ) -> Classifier:
  state, config, step = checkpoint.restore_training(workdir, step, mesh)
  head = state['params'].get('heads_supervised', {}).get('classifier')
  if head is None:
    raise errors.ConfigError(
        f'{workdir}: its objectives {sorted(config.objectives)} have no supervised classifier '
        f"head; a classifier comes from a run with the 'supervised' objective "
        f'(configs/imagenet_finetune.py) or from the imagenet_linear evaluator')
  encoder = encoder_api.encoder_of_state(state, config, step, workdir)
  label_space = config.labelled.dataset
  return make_classifier(encoder, head, {
      'label_space': label_space, 'image_size': image_size or int(config.input.image_size),
      'trained_by': 'fine-tuning (the training loop, supervised objective)',
      'source': workdir, 'step': step})
