"""What a run reads: the video dataset with its sampler (`video_source`, `make_input`) and
the labelled images it may co-train on (`make_labelled_input`), checked against the config."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
from absl import logging

from vivi import errors, objectives
from vivi.input import datasets, labelled, pipeline, records, samplers

# Datasets with at most this many videos are scanned once at the start for the videos the
# sampler can use (a pass that decodes no image): a dataset with none stops at once, one
# with some unusable videos says how many. Larger datasets are counted as they stream
# (`input/videos_skipped`).
USABLE_SCAN_MAX_VIDEOS = 5000


def check_label_spaces(config: ml_collections.ConfigDict, manifest: records.Manifest,
                       folder: str) -> None:
  """Each objective's label space fits the dataset's (its declared `check_dataset`)."""
  for name, cfg in objectives.resolve(config.objectives).items():
    check = objectives.get(name).check_dataset
    if check:
      check(cfg, manifest, folder)


@dataclasses.dataclass
class VideoSource:
  """The dataset a run trains on and the sampler that reads it."""
  folder: str
  manifest: records.Manifest
  sampler: Any


def video_source(config: ml_collections.ConfigDict) -> VideoSource:
  """Resolves `config.data` (building the synthetic world on first use), checks the label
  spaces and, for a small dataset, how many videos the sampler can use."""
  folder = datasets.resolve(config.data)
  manifest = records.Manifest.read(folder)
  check_label_spaces(config, manifest, folder)
  sampler = samplers.build(config, manifest, folder)
  total = manifest.counts.get('videos', 0)
  if total <= USABLE_SCAN_MAX_VIDEOS:
    usable, total = pipeline.count_usable(manifest.shard_paths(folder), sampler)
    needs = sampler.requirement(manifest.fps)
    name = config.input.sampler
    if not usable:
      raise errors.DatasetError(f'none of the {total} videos in {folder} can be used by the '
                                f'{name} sampler, which needs {needs}')
    if usable < total:
      logging.warning('%d of the %d videos in %s cannot be used by the %s sampler and are '
                      'skipped; it needs %s', total - usable, total, folder, name, needs)
    if usable < config.input.batch_videos:
      logging.warning('only %d usable video(s) for batches of %d (input.batch_videos): every '
                      'batch repeats them', usable, config.input.batch_videos)
  return VideoSource(folder, manifest, sampler)


def make_input(config: ml_collections.ConfigDict,
               source: VideoSource | None = None) -> pipeline.HostPipeline:
  source = source or video_source(config)
  return pipeline.make_pipeline(
      source.manifest.shard_paths(source.folder), source.sampler,
      batch_size=config.input.batch_videos // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      shuffle_buffer=config.data.shuffle_buffer,
      # Epochs are reshuffled and shuffle windows span them, so unusable videos
      # can follow each other across an epoch boundary: only a run far longer than an epoch
      # means that none is usable.
      max_consecutive_skips=(2 * source.manifest.counts['videos'] + config.data.shuffle_buffer
                             + 64),
      fps=source.manifest.fps, record_counts=source.manifest.shard_counts(source.folder))


def make_labelled_input(config: ml_collections.ConfigDict, mesh):
  """The co-training stream of labelled images, or None (`config.labelled.dataset` = '')."""
  settings = config.labelled
  if not settings.dataset:
    return None
  source = labelled.LabelledSource(dataset=settings.dataset, split=settings.split,
                                   data_dir=settings.data_dir or None,
                                   num_examples=settings.num_examples, seed=settings.seed)
  classes = labelled.num_classes(source)
  # The objectives that read the labels classify them: one logit per class of the dataset.
  for name, cfg in objectives.reading(config, 'labels').items():
    if cfg.num_classes != classes:
      raise errors.ConfigError(f'objectives.{name}.num_classes={cfg.num_classes} but '
                               f'{settings.dataset} has {classes} classes')
  return labelled.make_labelled_pipeline(
      source, labelled.default_augment(config.input.image_size,
                                       samplers.resolve(config).crop_area),
      batch_size=settings.batch_size // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count())
