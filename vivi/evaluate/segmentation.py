"""Semantic segmentation transfer: mIoU on ADE20K and PASCAL VOC 2012.

VITO (Parthasarathy et al.) reports ADE20K mIoU in Table 1 (VIVI 34.2, VITO 39.4, random
initialisation 27.9) and PASCAL VOC mIoU in Tables B.1-B.3 (VIVI 65.8, VITO 76.3), each
after fine-tuning the pretrained ResNet-50 ("For external models, we finetune publicly
available checkpoints", Table 1) with a fully convolutional network (FCN, Long et al. 2015,
VITO's reference [78]; UperNet [79] is for its Swin models). VITO's segmentation appendix
is not in the specification's copy of the paper (its appendices start at A.3), so the head
and schedule of `head='decoder'` follow the FCN transfer protocol of DetCon (Hénaff et al.
2021, VITO's [65]), which takes it from BYOL (Grill et al. 2020, appendix): the values and
their sources are listed at DEFAULTS.

Two heads (`head`):
  * 'decoder': the FCN head, two 3x3 convolutions of `decoder_channels` (256) channels, each
    followed by BatchNorm and ReLU, then a 1x1 convolution to the classes, upsampled
    bilinearly to the image. The protocol's ResNet-50 runs its last stage dilated (output
    stride 16); our ResNet v2 has no dilation, so the head reads block 4 upsampled to
    block 2's resolution (stride 16, block 3 has block 4's stride 32: resnet_v2.py) and
    concatenated with block 2 (our choice, `features`). The encoder is fine-tuned with it
    (VITO's protocol), or kept frozen with `encoder='frozen'`.
  * 'linear': a linear probe on frozen features: each block of `features` (block 4 by
    default) standardised by a BatchNorm without scale or offset (an affine map at
    inference, so the probe stays linear), mapped to the classes by a 1x1 convolution and
    upsampled bilinearly to the image; the logits of several blocks are summed, which is
    the 1x1 convolution of their upsampled concatenation (bilinear upsampling and a 1x1
    convolution commute). Our choice, the standard linear protocol of dense probing.

Data: official release folders, nothing is downloaded.
  * ADE20K = the MIT Scene Parsing benchmark (SceneParse150), its release
    ADEChallengeData2016: images/{training,validation}/*.jpg and annotations/{training,
    validation}/*.png (greyscale, 0 = "other objects", 1..150 the classes). As the
    benchmark (and mmsegmentation's reduce_zero_label), 0 is ignored and 1..150 become the
    150 classes 0..149. TFDS's `scene_parse150` cannot serve: it is built from the 2017
    challenge's annotations_instance (R channel: 100 instance categories, G: instance ids),
    not from the 150-class masks.
  * PASCAL VOC 2012 = VOCdevkit/VOC2012: JPEGImages/*.jpg, SegmentationClass/*.png (palette
    PNGs of indices, 0 background, 1..20 the classes, 255 void: object boundaries and
    difficult regions, ignored), ImageSets/Segmentation/{train,val}.txt. `voc_train_set=
    'train_aug'` trains on the 10,582 images of the SBD-augmented set (BYOL's and DetCon's
    train_aug2012): ImageSets/Segmentation/train_aug.txt and SegmentationClassAug/*.png
    (greyscale indices), as DeepLab's preparation lays them out. TFDS's voc/2012 has no
    masks.
  Scored on ADE20K's validation images and VOC's val list. With the suite's
  split='validation' the test images are never read: the last VALIDATION_FRACTION of the
  training list is held out and scored instead.

Training (both heads): random scaling by a factor in `scale_range` of the image whose longer
side is `crop_size`, random `crop_size` crops (padded with black and the ignore label where
the scaled image is smaller), random horizontal flips; per-pixel softmax cross-entropy
averaged over the labelled pixels (void / "other" ignored); SGD with momentum, weight decay
on kernels, the learning rate multiplied by 0.1 at 70% and 90% of `num_steps`.

Evaluation, single scale: each image resized (bilinear) so that its longer side is
`crop_size`, padded to crop_size x crop_size, its prediction cut to the image and resized
(nearest) back to the mask's own resolution, where it is scored. (The benchmarks' FCN code
scores VOC's <= 500 px images padded to 512 at their own scale; for ADE20K, whose images
are mostly 512 px on the shorter side, resizing the longer side keeps one fixed input
shape: our choice.)

Metrics over the whole evaluation set (`confusion_matrix`, `scores`): per class IoU =
TP / (TP + FP + FN) of the summed confusion matrix, mIoU their mean over the classes that
occur (in the labels or the predictions: a class with an empty union is left out, as
mmsegmentation's nanmean; on the full ADE20K and VOC validation sets every class occurs in
the labels), and pixel accuracy = correct / labelled pixels. Named
'<dataset>/<head>/miou' and '<dataset>/<head>/pixel_accuracy', counted in evaluated images.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vivi import errors, parallel
from vivi.evaluate import datasets, finetune, linear_probe
from vivi.evaluate.evaluators import Evaluator, Result
from vivi.models import video_model

IGNORE = 255               # The void label of VOC; ADE20K's "other" (0) is mapped to it.
FEATURES = ('block1', 'block2', 'block3', 'block4')
HEADS = ('linear', 'decoder')
ENCODER_MODES = ('', 'frozen', 'finetuned')     # '': the head's protocol (module docstring).
VOC_TRAIN_SETS = ('train', 'train_aug')
# split='validation': the last tenth of the training list is held out (ADE20K's own
# validation set is 2,000 images beside 20,210 for training: about a tenth).
VALIDATION_FRACTION = 0.1
DECAY_AT = (0.7, 0.9)      # Fractions of num_steps where the learning rate drops x0.1.
# The head's BatchNorm running averages: PyTorch's default (0.1 in its convention), that of
# common FCN implementations (our choice); the encoder keeps its own (resnet_v2.py).
HEAD_BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  num_classes: int
  release: str             # What the folder is, for messages.


DATASETS = {
    'ade20k': Dataset('ade20k', 150, 'ADE20K (the MIT Scene Parsing release '
                      'ADEChallengeData2016)'),
    'pascal_voc': Dataset('pascal_voc', 21, 'PASCAL VOC 2012 (VOCdevkit/VOC2012)'),
}
ADE_LAYOUT = ('ADEChallengeData2016/{images,annotations}/{training,validation}/ with '
              'images/*/<name>.jpg and annotations/*/<name>.png (greyscale, 0 = other, '
              '1..150 the classes); set evaluators.semantic_segmentation.ade_dir to the '
              'ADEChallengeData2016 folder. (TFDS scene_parse150 holds the 2017 instance '
              'annotations, not these 150-class masks.)')
VOC_LAYOUT = ('VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette '
              'indices, 255 void), ImageSets/Segmentation/{train,val}.txt}; for '
              "voc_train_set='train_aug' also ImageSets/Segmentation/train_aug.txt and "
              'SegmentationClassAug/<id>.png (SBD-augmented masks); set '
              'evaluators.semantic_segmentation.voc_dir to the VOC2012 folder')

# The evaluator's options. Sources: [P] the FCN protocol of BYOL's appendix that DetCon
# (VITO [65]) reuses for PASCAL; [V] VITO; [O] our choice. configs/evaluate.py holds the
# paper-scale variants; these defaults are the protocol's, at the suite's image size.
DEFAULTS = dict(
    dataset='pascal_voc',     # 'ade20k' (VITO Table 1) or 'pascal_voc' (Table B.3).
    ade_dir='',               # ADEChallengeData2016 folder (ADE_LAYOUT).
    voc_dir='',               # VOC2012 folder, or the VOCdevkit folder holding it.
    voc_train_set='train',    # 'train' (1,464, the official list) or 'train_aug' [P].
    head='linear',            # 'linear' (frozen probe) or 'decoder' (FCN) [V].
    encoder='',               # '' (linear: frozen; decoder: fine-tuned [V]), 'frozen'.
    features=(),              # () = the head's: linear ('block4',), decoder ('block2',
                              # 'block4') [O].
    decoder_channels=256,     # FCN head width [P].
    crop_size=0,              # Training crops and evaluation size; 0: config.image_size
                              # (the protocol's: 512 [P]).
    scale_range=(0.5, 2.0),   # Random rescaling of training images [P].
    batch_size=16,            # [P]
    num_steps=30000,          # [P] (about 45 epochs of train_aug's 10,582 images, DetCon's).
    learning_rate=0.02,       # [P], x0.1 at 70% and 90% of num_steps [P].
    momentum=0.9,             # SGD momentum [P].
    weight_decay=1e-4,        # On convolution kernels [P].
    num_train=0,              # > 0: only the first N training images (smoke runs).
    num_eval=0,               # > 0: only the first N evaluation images (smoke runs).
    eval_batch_size=16,
)


def head_features(options) -> tuple[str, ...]:
  """The blocks the head reads: `features`, or the head's default."""
  if options['features']:
    return tuple(options['features'])
  return ('block4',) if options['head'] == 'linear' else ('block2', 'block4')


def finetunes_encoder(options) -> bool:
  return options['head'] == 'decoder' and options['encoder'] != 'frozen'


def check(options) -> None:
  """Raises ValueError naming the option that cannot work and what is valid."""
  o = {**DEFAULTS, **options}
  for key, valid in (('dataset', tuple(DATASETS)), ('head', HEADS),
                     ('encoder', ENCODER_MODES), ('voc_train_set', VOC_TRAIN_SETS)):
    if o[key] not in valid:
      raise ValueError(f'{key}={o[key]!r}; valid: {valid}')
  if o['head'] == 'linear' and o['encoder'] == 'finetuned':
    raise ValueError("encoder='finetuned' with head='linear': a linear probe reads frozen "
                     "features; use head='decoder' to fine-tune")
  bad = [f for f in o['features'] if f not in FEATURES]
  if bad or isinstance(o['features'], str):
    raise ValueError(f'features={o["features"]!r}: a tuple of {FEATURES} (or () for the '
                     "head's default)")
  for key, low in (('decoder_channels', 1), ('crop_size', 0), ('batch_size', 1),
                   ('num_steps', 0), ('num_train', 0), ('num_eval', 0),
                   ('eval_batch_size', 1)):
    if not (isinstance(o[key], int) and o[key] >= low):
      raise ValueError(f'{key}={o[key]!r}: want an integer >= {low}')
  scales = tuple(o['scale_range'])
  if len(scales) != 2 or not 0 < scales[0] <= scales[1]:
    raise ValueError(f'scale_range={scales!r}: want (low, high) with 0 < low <= high')
  for key in ('learning_rate', 'momentum', 'weight_decay'):
    if not o[key] >= 0:
      raise ValueError(f'{key}={o[key]!r}: want a number >= 0')


# --- Metrics -------------------------------------------------------------------------------

def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
                     ignore: int = IGNORE) -> np.ndarray:
  """int64 [num_classes, num_classes]: entry (t, p) counts the pixels of true class t
  predicted p; pixels labelled `ignore` are left out."""
  labels, predictions = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
  if labels.shape != predictions.shape:
    raise ValueError(f'labels {labels.shape} and predictions {predictions.shape} differ')
  valid = labels != ignore
  index = labels[valid].astype(np.int64) * num_classes + predictions[valid].astype(np.int64)
  return np.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def scores(confusion: np.ndarray) -> dict[str, float]:
  """{'miou', 'pixel_accuracy'} of a summed confusion matrix (module docstring); NaN when it
  counts no pixel."""
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - tp
  present = union > 0
  total = confusion.sum()
  return {'miou': float(np.mean(tp[present] / union[present])) if present.any() else np.nan,
          'pixel_accuracy': float(tp.sum() / total) if total else np.nan}


# --- Data ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Example:
  image: str               # JPEG path.
  mask: str                # PNG path.


def read_label_png(path: str) -> np.ndarray:
  """uint8 [H, W] class indices of a mask PNG: a palette PNG (VOC's SegmentationClass: the
  palette indices, not their colours) or a greyscale one (ADE20K, SegmentationClassAug)."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      if image.mode not in ('P', 'L'):
        raise errors.DatasetError(
            f'{path}: a {image.mode} image; segmentation masks are palette (P) or greyscale '
            '(L) PNGs of class indices')
      return np.asarray(image, np.uint8).copy()
  except OSError as e:
    raise errors.DatasetError(f'{path}: unreadable mask ({e})') from None


def read_image(path: str) -> np.ndarray:
  from PIL import Image
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'), np.uint8).copy()
  except OSError as e:
    raise errors.DatasetError(f'{path}: unreadable image ({e})') from None


def class_labels(raw: np.ndarray, dataset: str, path: str) -> np.ndarray:
  """The mask's labels in [0, num_classes) or IGNORE: ADE20K's 0 ("other") -> IGNORE and
  1..150 -> 0..149; VOC's as stored. Any other value is a DatasetError naming the file."""
  if dataset == 'ade20k':
    if raw.max(initial=0) > 150:
      raise errors.DatasetError(f'{path}: label {raw.max()} in an ADE20K mask; valid 0 '
                                '(other) .. 150')
    return np.where(raw == 0, IGNORE, raw - 1).astype(np.uint8)
  bad = raw[(raw >= DATASETS[dataset].num_classes) & (raw != IGNORE)]
  if bad.size:
    raise errors.DatasetError(f'{path}: label {bad[0]} in a VOC mask; valid 0..20 and '
                              f'{IGNORE} (void)')
  return raw


def read_example(example: Example, dataset: str) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 image [H, W, 3], uint8 labels [H, W]) of one example."""
  image = read_image(example.image)
  labels = class_labels(read_label_png(example.mask), dataset, example.mask)
  if image.shape[:2] != labels.shape:
    raise errors.DatasetError(f'{example.mask}: mask {labels.shape} but its image '
                              f'{example.image} is {image.shape[:2]}')
  return image, labels


def ade20k_examples(ade_dir: str, subset: str) -> list[Example]:
  """The examples of ADEChallengeData2016's 'training' or 'validation' folders, by name."""
  folder = datasets.release_folder(ade_dir, DATASETS['ade20k'].release,
                                   'semantic_segmentation',
                                   (f'images/{subset}', f'annotations/{subset}'), ADE_LAYOUT)
  images = os.path.join(folder, 'images', subset)
  names = sorted(n[:-4] for n in os.listdir(images) if n.endswith('.jpg'))
  if not names:
    raise errors.DatasetError(f'{images} holds no .jpg images; expected layout: {ADE_LAYOUT}')
  return [Example(os.path.join(images, n + '.jpg'),
                  os.path.join(folder, 'annotations', subset, n + '.png')) for n in names]


def voc_folder(voc_dir: str, expected: Sequence[str]) -> str:
  """The VOC2012 folder: `voc_dir` itself, or its VOC2012 subfolder (a VOCdevkit folder)."""
  if voc_dir and os.path.isdir(os.path.join(os.path.expanduser(voc_dir), 'VOC2012')):
    voc_dir = os.path.join(os.path.expanduser(voc_dir), 'VOC2012')
  return datasets.release_folder(voc_dir, DATASETS['pascal_voc'].release,
                                 'semantic_segmentation', expected, VOC_LAYOUT)


def voc_examples(voc_dir: str, image_set: str) -> list[Example]:
  """The examples of ImageSets/Segmentation/<image_set>.txt ('train', 'val', 'train_aug'),
  in the list's order; train_aug's masks are SegmentationClassAug's."""
  masks = 'SegmentationClassAug' if image_set == 'train_aug' else 'SegmentationClass'
  listing = f'ImageSets/Segmentation/{image_set}.txt'
  folder = voc_folder(voc_dir, ('JPEGImages', masks, listing))
  with open(os.path.join(folder, listing)) as f:
    ids = [line.split()[0] for line in f if line.strip()]
  if not ids:
    raise errors.DatasetError(f'{os.path.join(folder, listing)} lists no image')
  return [Example(os.path.join(folder, 'JPEGImages', i + '.jpg'),
                  os.path.join(folder, masks, i + '.png')) for i in ids]


def held_out(num_examples: int) -> int:
  """Where split='validation' cuts a training list of `num_examples`: the examples from the
  cut on (the last VALIDATION_FRACTION, at least one) are scored, those before train."""
  if num_examples < 2:
    raise errors.DatasetError(f'split=validation holds out part of the training images, but '
                              f'there are {num_examples}; use split=test')
  return num_examples - max(1, int(num_examples * VALIDATION_FRACTION))


def splits(options, split: str) -> tuple[list[Example], list[Example]]:
  """(training examples, evaluation examples) of the option's dataset for the suite's split:
  'test' scores the benchmark's validation images, 'validation' a held-out part of train."""
  if options['dataset'] == 'ade20k':
    train = ade20k_examples(options['ade_dir'], 'training')
    evaluate = (lambda: ade20k_examples(options['ade_dir'], 'validation'))
  else:
    train = voc_examples(options['voc_dir'], options['voc_train_set'])
    evaluate = (lambda: voc_examples(options['voc_dir'], 'val'))
  if split == 'validation':   # Never the benchmark's evaluation images.
    cut = held_out(len(train))
    train, scored = train[:cut], train[cut:]
  else:
    scored = evaluate()
  if options['num_train']:
    train = train[:options['num_train']]
  if options['num_eval']:
    scored = scored[:options['num_eval']]
  return train, scored


# --- Geometry ------------------------------------------------------------------------------

def _resize(array: np.ndarray, height: int, width: int, nearest: bool) -> np.ndarray:
  from PIL import Image
  method = Image.NEAREST if nearest else Image.BILINEAR
  return np.asarray(Image.fromarray(array).resize((width, height), method))


def train_crop(image: np.ndarray, labels: np.ndarray, crop: int,
               scale_range: Sequence[float], rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
  """A training view (module docstring): random scale of the image whose longer side is
  `crop`, padding (black, IGNORE) up to crop x crop, a random crop, a random flip."""
  h, w = labels.shape
  scale = crop / max(h, w) * rng.uniform(*scale_range)
  nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
  image, labels = _resize(image, nh, nw, False), _resize(labels, nh, nw, True)
  ph, pw = max(crop, nh), max(crop, nw)
  image = np.pad(image, ((0, ph - nh), (0, pw - nw), (0, 0)))
  labels = np.pad(labels, ((0, ph - nh), (0, pw - nw)), constant_values=IGNORE)
  y, x = rng.integers(0, ph - crop + 1), rng.integers(0, pw - crop + 1)
  image, labels = image[y:y + crop, x:x + crop], labels[y:y + crop, x:x + crop]
  if rng.random() < 0.5:
    image, labels = image[:, ::-1], labels[:, ::-1]
  return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def eval_input(image: np.ndarray, crop: int) -> tuple[np.ndarray, tuple[int, int]]:
  """(the image resized so that its longer side is `crop`, padded with black to crop x crop;
  the resized image's (height, width))."""
  h, w = image.shape[:2]
  scale = crop / max(h, w)
  nh, nw = min(crop, max(1, round(h * scale))), min(crop, max(1, round(w * scale)))
  resized = _resize(image, nh, nw, False)
  return np.pad(resized, ((0, crop - nh), (0, crop - nw), (0, 0))), (nh, nw)


def prediction_at_mask_size(prediction: np.ndarray, size: tuple[int, int],
                            mask_shape: tuple[int, int]) -> np.ndarray:
  """The prediction [crop, crop] of `eval_input`'s padded image cut to the image and resized
  (nearest) to the mask's [H, W]."""
  return _resize(prediction[:size[0], :size[1]].astype(np.uint8), *mask_shape, True)


# --- Model ---------------------------------------------------------------------------------

def _upsample(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  if x.shape[1:3] == tuple(size):
    return x
  return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), 'bilinear')


class Segmenter(nn.Module):
  """uint8 images [N, S, S, 3] -> per-pixel logits [N, S, S, num_classes]: the encoder and
  the head of the module docstring."""
  encoder: nn.Module
  num_classes: int
  head: str
  features: tuple[str, ...]
  channels: int = 256
  finetune_encoder: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    feats = self.encoder(video_model.normalize_images(images),
                         train=train and self.finetune_encoder)
    feats = {f: feats[f].astype(jnp.float32) for f in self.features}
    if not self.finetune_encoder:
      feats = jax.lax.stop_gradient(feats)
    size = images.shape[1:3]
    if self.head == 'linear':
      logits = 0.0
      for i, f in enumerate(self.features):
        x = nn.BatchNorm(use_running_average=not train, momentum=HEAD_BN_MOMENTUM,
                         use_bias=False, use_scale=False, name=f'norm_{f}')(feats[f])
        x = nn.Conv(self.num_classes, (1, 1), use_bias=i == 0, name=f'linear_{f}')(x)
        logits = logits + _upsample(x, size)
      return logits
    finest = max((feats[f].shape[1:3] for f in self.features), key=lambda s: s[0] * s[1])
    x = jnp.concatenate([_upsample(feats[f], finest) for f in self.features], -1)
    for i in range(2):
      x = nn.Conv(self.channels, (3, 3), padding='SAME', use_bias=False, name=f'conv{i}')(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=HEAD_BN_MOMENTUM,
                               name=f'norm{i}')(x))
    return _upsample(nn.Conv(self.num_classes, (1, 1), name='classifier')(x), size)


def init_variables(model: Segmenter, encoder_variables: dict, crop: int, seed: int) -> dict:
  """The model's variables: a fresh head and the given encoder's."""
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, crop, crop, 3), jnp.uint8)))(
      jax.random.key(seed))
  params = dict(variables['params'])
  params['encoder'] = encoder_variables['params']
  out = {'params': params, 'batch_stats': dict(variables.get('batch_stats', {}))}
  if encoder_variables.get('batch_stats'):
    out['batch_stats']['encoder'] = encoder_variables['batch_stats']
  return out


def _kernel_mask(params):
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == 'kernel', params)


def optimizer(options) -> optax.GradientTransformation:
  """SGD with momentum and weight decay on kernels; x0.1 at DECAY_AT of num_steps."""
  steps = options['num_steps']
  schedule = optax.piecewise_constant_schedule(
      options['learning_rate'], {max(1, int(steps * f)): 0.1 for f in DECAY_AT})
  parts = ([optax.add_decayed_weights(options['weight_decay'], mask=_kernel_mask)]
           if options['weight_decay'] else [])
  return optax.chain(*parts, optax.sgd(schedule, momentum=options['momentum'] or None))


def pixel_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy averaged over the pixels not labelled IGNORE."""
  valid = labels != IGNORE
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.where(valid, labels, 0).astype(jnp.int32))
  return jnp.sum(ce * valid) / jnp.maximum(jnp.sum(valid), 1)


def train_step(model: Segmenter, tx: optax.GradientTransformation, mesh) -> Callable:
  """(state, images, labels) -> (state, loss): one SGD step of the trainable parameters
  (the head's, and the encoder's when it is fine-tuned), BatchNorm in train mode."""

  def step(state, images, labels):
    def loss_fn(trainable):
      variables = {'params': {**state['frozen'], **trainable},
                   'batch_stats': state['batch_stats']}
      logits, mutated = model.apply(variables, images, train=True, mutable=['batch_stats'])
      return pixel_loss(logits, labels), mutated['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    return {'params': optax.apply_updates(state['params'], updates),
            'frozen': state['frozen'], 'batch_stats': {**state['batch_stats'], **batch_stats},
            'opt_state': opt_state}, loss

  rep, shard = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  # No donation: the frozen encoder's buffers are the caller's encoder variables.
  return jax.jit(step, in_shardings=(rep, shard, shard), out_shardings=(rep, rep))


def _workers() -> int:
  return max(1, min(8, os.cpu_count() or 1))


def training_batches(examples: list[Example], dataset: str, crop: int,
                     scale_range: Sequence[float], batch_size: int, seed: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Endless (images uint8 [B, crop, crop, 3], labels uint8 [B, crop, crop]) of seeded
  epochs (finetune.batch_indices), decoded and augmented in threads one batch ahead."""
  order = finetune.batch_indices(len(examples), batch_size, seed)
  rng = np.random.default_rng([seed, 7])

  def load(index: int, view_seed: int):
    image, labels = read_example(examples[index], dataset)
    return train_crop(image, labels, crop, scale_range, np.random.default_rng(view_seed))

  with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:
    submit = lambda: [pool.submit(load, int(i), int(s)) for i, s in
                      zip(next(order), rng.integers(0, 2 ** 31, batch_size))]
    ahead = submit()
    while True:
      current, ahead = ahead, submit()
      views = [f.result() for f in current]
      yield np.stack([v[0] for v in views]), np.stack([v[1] for v in views])


def evaluate(model: Segmenter, variables: dict, examples: list[Example], dataset: str,
             crop: int, mesh, batch_size: int, log: Callable = print) -> np.ndarray:
  """The summed confusion matrix of the model's predictions over `examples` (module
  docstring: single scale, scored at each mask's resolution)."""
  def predict(v, images):
    return jnp.argmax(model.apply(v, images, train=False), -1).astype(jnp.uint8)

  fn = linear_probe.jit_encoder(predict, mesh)
  num_classes = DATASETS[dataset].num_classes
  confusion = np.zeros((num_classes, num_classes), np.int64)
  chunk = max(batch_size, 4 * batch_size)

  def load(example):
    image, labels = read_example(example, dataset)
    padded, size = eval_input(image, crop)
    return padded, size, labels

  with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:
    for start in range(0, len(examples), chunk):
      loaded = list(pool.map(load, examples[start:start + chunk]))
      images = np.stack([x[0] for x in loaded])
      predictions = linear_probe.extract_features(fn, variables, images, mesh, batch_size)
      for prediction, (_, size, labels) in zip(predictions, loaded):
        confusion += confusion_matrix(
            labels, prediction_at_mask_size(prediction, size, labels.shape), num_classes)
      log(f'{dataset}: scored {min(start + chunk, len(examples))}/{len(examples)} images')
  return confusion


def train(model: Segmenter, variables: dict, examples: list[Example], options, crop: int,
          mesh, seed: int, log: Callable = print) -> dict:
  """The model's variables after `num_steps` steps on crops of `examples`."""
  finetuned = model.finetune_encoder
  params = variables['params']
  trainable = params if finetuned else {k: v for k, v in params.items() if k != 'encoder'}
  frozen = {} if finetuned else {'encoder': params['encoder']}
  tx = optimizer(options)
  rep, shard = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  state = jax.device_put({'params': trainable, 'frozen': frozen,
                          'batch_stats': variables['batch_stats'],
                          'opt_state': tx.init(trainable)}, rep)
  step = train_step(model, tx, mesh)
  steps = options['num_steps']
  every = max(1, steps // 10)
  batches = training_batches(examples, options['dataset'], crop, options['scale_range'],
                             options['batch_size'], seed)
  for i in range(steps):
    images, labels = next(batches)
    state, loss = step(state, jax.device_put(images, shard), jax.device_put(labels, shard))
    if (i + 1) % every == 0 or i + 1 == steps:
      log(f'{options["dataset"]} {model.head}: step {i + 1}/{steps}, loss {float(loss):.4f}')
  batches.close()
  return {'params': {**state['frozen'], **state['params']}, 'batch_stats': state['batch_stats']}


def segmentation_eval(ctx, options) -> Result:
  """Trains the option's head on the dataset's training images and scores mIoU and pixel
  accuracy on its evaluation images (module docstring)."""
  if ctx.is_histogram:
    return {}, {}     # A histogram has no feature maps.
  dataset, head = options.dataset, options.head
  parallel.check_batch_size(options.batch_size, ctx.mesh,
                            'config.evaluators.semantic_segmentation.batch_size')
  train_set, eval_set = splits(options, ctx.split)
  crop = options.crop_size or ctx.config.image_size
  model = Segmenter(encoder=ctx.encoder.module, num_classes=DATASETS[dataset].num_classes,
                    head=head, features=head_features(options),
                    channels=options.decoder_channels,
                    finetune_encoder=finetunes_encoder(options))
  ctx.log(f'{dataset} {head} ({"fine-tuned" if model.finetune_encoder else "frozen"} '
          f'encoder, {", ".join(model.features)}): {len(train_set)} training and '
          f'{len(eval_set)} {ctx.split} images, {crop} px crops, {options.num_steps} steps')
  variables = init_variables(model, ctx.encoder.variables, crop, ctx.config.seed)
  variables = train(model, variables, train_set, options, crop, ctx.mesh, ctx.config.seed,
                    ctx.log)
  confusion = evaluate(model, variables, eval_set, dataset, crop, ctx.mesh,
                       options.eval_batch_size, ctx.log)
  metrics = {f'{dataset}/{head}/{k}': v for k, v in scores(confusion).items()}
  for name in metrics:
    ctx.count(name, len(eval_set))
  ctx.log(f'{dataset} {head}: mIoU {metrics[f"{dataset}/{head}/miou"]:.4f}, pixel accuracy '
          f'{metrics[f"{dataset}/{head}/pixel_accuracy"]:.4f}')
  return metrics, {}


SEGMENTATION = Evaluator(segmentation_eval, DEFAULTS, check)
