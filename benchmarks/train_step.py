"""Train-step and inference throughput: our ResNet v2 against plain Flax and PyTorch eager.

  python -m benchmarks.train_step [--batch 32 --image_size 112 --iters 10 --depth 50]

Prints the machine, the encoders' parameter counts (equal, or it stops), then two tables of
median images/s, each measured in one run with the sides alternating (timing.alternate):

* train step (forward + backward + SGD momentum 0.9, BatchNorm in train mode, encoder +
  linear 1000-way classifier with softmax cross-entropy on random labels, fp32, uint8
  images scaled to [-1, 1] inside the step): ours (`vivi.models.resnet_v2.ResNetV2`, one
  jitted step on one device), plain Flax (`nn.Conv` everywhere, timing.PlainResNetV2) and
  the PyTorch peer (eager, channels-last, benchmarks/torch_resnet.py);
* inference (pooled 'pre_logits' features, BatchNorm in inference mode): ours and PyTorch
  (under torch.inference_mode);

and a table of the ratios ours/PyTorch and ours/plain Flax, each the median of the
per-round ratios with their min-max, against the targets (train >= 0.8x PyTorch and
>= 1.3x plain Flax; inference >= 1.0x PyTorch).
"""

from __future__ import annotations

import argparse

from benchmarks import timing, torch_resnet


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--image_size', type=int, default=112)
  parser.add_argument('--iters', type=int, default=10, help='timed rounds per table')
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--depth', type=int, default=50)
  args = parser.parse_args()

  print(timing.machine())
  counts = torch_resnet.param_counts(args.depth)
  print(f'ResNet-{args.depth} v2 encoder parameters: ' +
        ', '.join(f'{k} {v:,}' for k, v in counts.items()) +
        f' (+ {2048 * timing.NUM_CLASSES + timing.NUM_CLASSES:,} in the classifier)')
  images, labels = timing.random_batch(args.batch, args.image_size)
  what = (f'batch {args.batch} at {args.image_size} px, fp32, {args.warmup} warm-up + '
          f'{args.iters} rounds')

  train = {
      'ours': timing.flax_train_step(timing.ours(args.depth), images, labels)[0],
      'plain Flax': timing.flax_train_step(timing.PlainResNetV2(args.depth), images,
                                           labels)[0],
      'PyTorch': torch_resnet.torch_train_step(args.depth, images, labels),
  }
  train_times = timing.alternate(train, args.iters, args.warmup)
  infer = {
      'ours': timing.flax_features(timing.ours(args.depth), images)[0],
      'PyTorch': torch_resnet.torch_features(args.depth, images),
  }
  infer_times = timing.alternate(infer, args.iters, args.warmup)

  print(f'\nTrain step, ResNet-{args.depth} v2 BatchNorm, {what}:\n')
  train_rates = timing.rates(train_times, args.batch)
  print(timing.table(['side', 'images/s', 'median step (ms)'],
                     [[k, f'{v:.1f}', f'{1000 * args.batch / v:.0f}']
                      for k, v in train_rates.items()]))
  print(f'\nInference (pooled features), {what}:\n')
  infer_rates = timing.rates(infer_times, args.batch)
  print(timing.table(['side', 'images/s', 'median batch (ms)'],
                     [[k, f'{v:.1f}', f'{1000 * args.batch / v:.0f}']
                      for k, v in infer_rates.items()]))

  print('\nRatios (median of per-round ratios, min-max in parentheses):\n')
  rows = [
      ['train: ours / PyTorch', timing.ratio(train_times, 'ours', 'PyTorch'), 0.8],
      ['train: ours / plain Flax', timing.ratio(train_times, 'ours', 'plain Flax'), 1.3],
      ['inference: ours / PyTorch', timing.ratio(infer_times, 'ours', 'PyTorch'), 1.0],
      ['(train: plain Flax / PyTorch)', timing.ratio(train_times, 'plain Flax', 'PyTorch'),
       None],
  ]
  print(timing.table(
      ['comparison', 'ratio', 'target', 'met'],
      [[name, timing.format_ratio(r), f'>= {t}x' if t else '-',
        ('yes' if r[0] >= t else 'no') if t else '-'] for name, r, t in rows]))


if __name__ == '__main__':
  main()
