r"""Full fine-tuning on ImageNet from a pretrained encoder: the training loop with the
supervised objective (configs/supervised.py), its encoder initialised from an exported
encoder folder or a training workdir (`config.init_encoder`), so fine-tuning is the same
step, checkpoints and resume as pretraining. What Romijnders et al. (section 5.2, Table 5
"fine tuning") do to get predictions in ImageNet's label space for the robustness and
shape-bias evaluations; the run's workdir is a classifier those evaluators take
(`classifier` option; vivi/classifier.py load_classifier).

  python main.py --config=configs/imagenet_finetune.py --workdir=/tmp/vivi_obj_in1k \
      --config.init_encoder=/tmp/vivi_obj/ --config.labelled.data_dir=/path/to/tfds
  python evaluate.py --config=configs/evaluate.py:robustness --workdir=/tmp/vivi_obj \
      --config.evaluators.imagenet_variants.classifier=/tmp/vivi_obj_in1k

The papers do not give their fine-tuning recipe; ours is the supervised reference's
(configs/supervised.py: batch 1024, SGD momentum 0.9, 0.4 after a 5-epoch warm-up, x0.1 at
epochs 30, 60 and 80 of 90, weight decay 1e-4, Inception crops and flips). `model` must be
the pretrained encoder's (a mismatch is an error naming the keys): set
--config.model.norm=group_ws and --config.model.width=3 for those runs.

`:tiny` fine-tunes a tiny run's encoder on the synthetic world's labelled `class` task with
the tiny supervised schedule:

  python main.py --config=configs/imagenet_finetune.py:tiny --workdir=/tmp/vivi_obj_ft \
      --config.init_encoder=/tmp/vivi_obj_tiny
"""

import ml_collections

from configs import supervised


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = supervised.get_config(variant)
  # Required (None: main.py refuses to start without it): an exported encoder folder or a
  # training workdir.
  config.init_encoder = ml_collections.config_dict.placeholder(str)
  return config
