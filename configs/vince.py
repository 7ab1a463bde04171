r"""VINCE: Multi-Frame Multi-Pair NCE with a MoCo memory bank (Gordon et al., ECCV 2020).

Paper run (Appendix 1, the ResNet-50 recipe), on R2V2-style records (data/, frames of
uncurated videos; VINCE's R2V2 stores T=4 frames 5 s apart per video):

  python main.py --config=configs/vince.py --workdir=/tmp/vince \
      --config.data.dataset=/path/to/records

  Published values: ResNet-50; "MoCo v2" augmentation (crop, colour jitter, grayscale,
  blur, flip; 224 px); batch 896; SGD (momentum 0.9, weight decay 1e-4) with learning
  rate 0.105 and cosine annealing for 286,000 iterations; embedding 128-d; tau = 1/0.2
  (our temperature 0.2); memory bank of 65,536 keys; momentum encoder g <- 0.999 g + 0.001 f.
  R2V2 sampling: a random start, T=4 frames G=5 s apart; k images per video drawn with
  replacement for the anchors and for the positives (Table 3 "Multi-Frame Multi-Pair": 4
  anchors and 4 positives per video, 16 positive pairs).

  Chosen here: "batch 896" counts the anchor images of a step (one pass of f; g sees as
  many positives): 224 videos x k=4. The paper gives k only for its ResNet-18 ablation; we
  keep its k=4. The embedding head's hidden width (512 for ResNet-18) is 2048 for
  ResNet-50 (vivi/objectives/vince.py).

  Shuffle-BN: the paper shuffles the batch across GPUs before the key encoder so that
  per-GPU BatchNorm statistics cannot tell which images share a video. Here BatchNorm
  statistics are computed over the *global* batch (vivi/parallel.py), one set for all n
  images, so no subset of the batch has statistics of its own to leak: the encoder is
  equivariant to any shuffle of the batch, which makes Shuffle-BN a no-op
  (tests/test_target_state.py checks this).

Smoke run on the synthetic world:

  python main.py --config=configs/vince.py:tiny --workdir=/tmp/vince_tiny

  The tiny runs' encoder, image size, budget and optimiser (configs/common.py), crops
  covering at least 25% of the frame, k=4 frames of 24 videos per step, a queue of 128
  keys. Prints the probe table (trained vs init).
  Expected result: projects/synthetic_world/results.md, 'Gains per method'.
  Its positives are frames up to 15 s apart, half of them in another shot; a palette shared
  by a whole video would let them match on the background, which colour jitter does not
  remove, so the synthetic world gives each shot's background a palette of its own
  (vivi/input/synthetic.py).

Variants, comma-separated: a size ('' or 'tiny') and at most one Table 3 row:
  same_frame    k=1, the positive is the anchor's frame augmented again ("Same Frame", MoCo)
  multi_frame   k=1, anchor and positive drawn independently from the video ("Multi-Frame")
  (default: k=4 anchors and 4 positives per video, "Multi-Frame Multi-Pair"). The k=1 rows
  keep the number of images per step: 4x the videos.
"""

import ml_collections

from configs import common

ROWS = ('same_frame', 'multi_frame')
TINY_LR_MULTIPLIER = 1  # Chosen by the validation sweep (configs/common.py).


# The TPU slice (benchmarks/aot.py): VINCE trained on 8 GPUs (Appendix 1); 8 TPU v3 cores
# are its peer, and 224 videos do not divide over 128.
TPU_SLICE = 'v3:2x2'


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  size, row = common.parse_variant(variant, 'configs/vince.py', ROWS)
  config = common.base(size)

  config.input = ml_collections.ConfigDict()
  config.input.sampler = 'vince'       # vivi/input/vince_sampler.py
  config.input.batch_videos = 224      # x k = 896 anchors per step.
  config.input.num_frames = 4          # T: frames per video in R2V2 (section 3.1).
  config.input.gap_seconds = 5.0       # G.
  config.input.frames_per_video = 4    # k (Table 3, Multi-Pair).
  config.input.same_frame = False
  config.input.image_size = 224
  config.input.augment = 'moco_v2'     # vivi/input/augment.py
  config.input.crop_area = (0.2, 1.0)  # MoCo v2's RandomResizedCrop scale.

  config.objectives = ml_collections.ConfigDict()
  config.objectives.vince = dict(weight=1.0, hidden=2048, embedding_dim=128, temperature=0.2,
                                 memory_size=65_536)
  config.target_network = dict(momentum=0.999, schedule='constant')   # MoCo's key encoder.

  config.optimizer = dict(name='sgd', momentum=0.9, nesterov=False, weight_decay=1e-4)
  config.schedule = dict(name='cosine', base_learning_rate=0.105, warmup_steps=0)
  config.num_train_steps = 286_000

  if row:
    config.input.frames_per_video = 1
    config.input.batch_videos *= 4
    config.input.same_frame = row == 'same_frame'
  if size:
    common.tiny_schedule(config, images_per_video=config.input.frames_per_video,
                         lr_multiplier=TINY_LR_MULTIPLIER)
    config.input.crop_area = (0.25, 1.0)
    config.objectives.vince.hidden = 512        # The ResNet-18 head of Appendix 1 ...
    config.objectives.vince.embedding_dim = 64  # ... and its 64-d embedding.
    # The paper's queue holds 65,536 keys of ~240k R2V2 videos; at the same ratio the
    # 400-video world gets 128. A queue of 1,024 would hold several keys of every video,
    # the anchor's own video among them as negatives (the loss then drifts to chance and
    # the embeddings collapse).
    config.objectives.vince.memory_size = 128
  return config
