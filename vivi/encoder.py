"""The public encoder API: the ResNet v2 encoder of any training checkpoint, restored on any
mesh, and the encoder alone as its own checkpoint for downstream fine-tuning.

  from vivi import encoder
  enc = encoder.load_encoder('/tmp/encoder')        # or encoder.restore_encoder(workdir)
  features = enc.features(images_uint8)             # {'block1'..'block4', 'pre_logits'}

An exported encoder is a folder with `variables/` (an orbax checkpoint of
{'params', 'batch_stats'}) and `encoder.json` (architecture, provenance, input range).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from vivi import checkpoint, errors, parallel
from vivi.models import resnet_v2, video_model

ENCODER_JSON = 'encoder.json'
INPUT = 'uint8 RGB [N, S, S, 3]; the encoder scales it to [-1, 1]'


@dataclasses.dataclass
class Encoder:
  """A ResNet v2 encoder and its variables ({'params', 'batch_stats'}), ready to apply to
  uint8 images [N, S, S, 3] (`features`); `info` says where it came from."""
  module: resnet_v2.ResNetV2
  variables: dict
  info: dict

  def features(self, images) -> dict:
    """Every block's features and 'pre_logits' of uint8 RGB images [N, S, S, 3] in [0, 255]
    (`info['input']`), BatchNorm in inference mode (compiled once per input shape).

    Other dtypes are refused rather than guessed: float images in [0, 1] would be read as
    nearly black and give different features without any error.
    """
    dtype = np.dtype(getattr(images, 'dtype', np.asarray(images).dtype))
    if dtype != np.uint8:
      raise TypeError(
          f'Encoder.features takes uint8 RGB images in [0, 255] (encoder.json: '
          f'{self.info.get("input", INPUT)!r}); got {dtype}. Convert float images in [0, 1] '
          f'with (x * 255).round().astype(np.uint8); the encoder scales to [-1, 1] itself.')
    if np.ndim(images) != 4 or np.shape(images)[-1] != 3:
      raise ValueError(f'Encoder.features takes images [N, S, S, 3]; got shape '
                       f'{np.shape(images)}')
    return _apply(self.module, self.variables, images)


@functools.partial(jax.jit, static_argnums=0)
def _apply(module: resnet_v2.ResNetV2, variables: dict, images) -> dict:
  return module.apply(variables, video_model.normalize_images(images), train=False)


def restore_encoder(workdir: str, step: int | None = None, mesh=None) -> Encoder:
  """The encoder of a training workdir's checkpoint (see `restore_training`)."""
  state, config, step = checkpoint.restore_training(workdir, step, mesh)
  return encoder_of_state(state, config, step, workdir)


def encoder_of_state(state: dict, config: ml_collections.ConfigDict, step: int,
                     workdir: str) -> Encoder:
  """The encoder of a restored training state (`checkpoint.restore_training`)."""
  variables = {'params': state['params']['encoder']}
  if state.get('batch_stats'):
    variables['batch_stats'] = state['batch_stats']['encoder']
  info = {'model': config.model.to_dict(), 'source': os.path.abspath(workdir), 'step': step,
          'objectives': sorted(config.objectives), 'input': INPUT,
          'input_dtype': 'uint8', 'input_range': [0, 255]}
  return Encoder(video_model.build_encoder(info['model']), variables, info)


def load_pretrained(path: str, mesh=None) -> Encoder:
  """The encoder at `path`: an `export_encoder` folder (it has encoder.json) or a training
  workdir (its latest checkpoint); what fine-tuning starts from (`config.init_encoder`)."""
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(os.path.join(full, ENCODER_JSON)):
    return load_encoder(full, mesh)
  if os.path.isdir(os.path.join(full, 'checkpoints')):
    return restore_encoder(full, None, mesh)
  raise errors.MissingPathError(
      f'{full} is neither an exported encoder (no {ENCODER_JSON}) nor a training workdir (no '
      f'checkpoints/): config.init_encoder names one of them')


def random_encoder(model: ml_collections.ConfigDict, image_size: int, seed: int,
                   mesh=None) -> Encoder:
  """The encoder of `model` (a `config.model`) at random initialisation: the from-scratch
  baseline of a transfer protocol (VTAB's), and smoke runs of evaluate.py."""
  module = video_model.build_encoder(model)
  init = jax.jit(module.init, out_shardings=parallel.replicated(mesh or parallel.make_mesh()))
  variables = init(jax.random.key(seed), jnp.zeros((1, image_size, image_size, 3)))
  info = {'model': dict(model), 'source': f'random initialisation (seed {seed})', 'step': 0,
          'objectives': [], 'input': INPUT, 'input_dtype': 'uint8', 'input_range': [0, 255]}
  return Encoder(module, dict(variables), info)


def export_encoder(encoder: Encoder, out_dir: str) -> str:
  """Writes the encoder alone (its variables as an orbax checkpoint plus `encoder.json`
  with its architecture and provenance) for fine-tuning elsewhere; returns `out_dir`."""
  out_dir = os.path.abspath(out_dir)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.join(out_dir, 'variables'), encoder.variables, force=True)
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, ENCODER_JSON), 'w') as f:
      json.dump(encoder.info, f, indent=1)
  return out_dir


def encoder_info(path: str) -> dict:
  """The `encoder.json` of an `export_encoder` folder (MissingPathError if it has none)."""
  json_path = os.path.join(os.path.abspath(path), ENCODER_JSON)
  if not os.path.exists(json_path):
    raise errors.MissingPathError(f'{os.path.abspath(path)} is not an exported encoder: it has '
                                  f'no {ENCODER_JSON}')
  with open(json_path) as f:
    try:
      return json.load(f)
    except ValueError as e:
      raise errors.PathError(f'{json_path}: not valid JSON ({e}); export the encoder '
                             'again') from None


def load_encoder(path: str, mesh=None) -> Encoder:
  """Loads an `export_encoder` folder, replicated over `mesh` (default: all devices)."""
  path = os.path.abspath(path)
  info = encoder_info(path)
  module = video_model.build_encoder(info['model'])
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                              train=False))
  return Encoder(module, restore_variables(os.path.join(path, 'variables'), shapes, mesh), info)


def restore_variables(path: str, shapes, mesh=None) -> dict:
  """The orbax checkpoint at `path` of variables shaped as `shapes` (a `jax.eval_shape` of
  the module's init), replicated over `mesh` (default: all devices)."""
  sharding = parallel.replicated(mesh or parallel.make_mesh())
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                          dict(shapes))
  with ocp.StandardCheckpointer() as ckpt:
    return dict(ckpt.restore(path, abstract))
