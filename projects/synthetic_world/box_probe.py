r"""How much of a detected object's class can a linear probe read from its box representation?

  python -m projects.synthetic_world.box_probe \
      --runs=supervised=/tmp/vivi_learning/seed1/supervised,\
      vivi_obj=/tmp/vivi_learning/seed0/vivi_obj

The object level of Romijnders et al. represents a box by the block-4 feature column at its
centre (Figure 3) and trains that column with the detector's labels. This measures, for
frozen encoders (the tiny encoder at random initialisation plus the given training
workdirs), the linear-probe accuracy of the detector label on held-out boxes of the
synthetic world (`object_nn.held_out_boxes`: frames the training pipeline's box filter has
seen, score >= 0.05, top 5) from four representations of a box:

  column4   block 4's column at the box centre (the paper's, what training uses);
  column3   block 3's column at the box centre (twice the resolution);
  boxpool4  block 4 averaged over the cells the box covers;
  crop      the box (square, 1.5x its larger side) cropped from the frame, resized to the
            frame size and encoded on its own, pooled block 4 (an object-centric bound).

Beside them, the nearest-neighbour same-class fraction of Table 2 on `column4` (the
`object_nn` probe's measure, L2-normalised) over all held-out boxes (`nn all`) and with
neighbours only from *other* videos (`nn other videos`): a video's boxes are mostly the same
few instances, so a neighbour from the same video can agree on the class by the instance's
colour alone.

`--scale=2` upsamples the frames (bilinear) before anything is encoded: the same objects
twice as many pixels across and block 4 an 8 x 8 grid, what a larger input image would give
the same encoder.

Probe: `linear_probe.probe_accuracy` (L2 chosen on a held-out fifth of the training boxes),
trained on the boxes of the first half of the videos, scored on the other half (no video in
both), ± the binomial standard error. Chance is the majority class's share (printed).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from configs import common
from vivi import encoder as encoders
from vivi.evaluate import knn, linear_probe, object_nn
from vivi.input import synthetic
from vivi.models import box_features
from vivi.objectives import losses

REPRESENTATIONS = ('column4', 'column3', 'boxpool4', 'crop')


def crops(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """uint8 [N, S, S, 3] crops (bilinear) of square windows around `boxes` [N, 4]."""
  from PIL import Image
  size = frames.shape[1]
  out = []
  for frame, (y0, x0, y1, x1) in zip(frames, boxes):
    side = 1.5 * max(y1 - y0, x1 - x0) * size
    cy, cx = (y0 + y1) / 2 * size, (x0 + x1) / 2 * size
    # Framed by its own edge pixels, so a window may leave the frame.
    padded = Image.fromarray(np.pad(frame, ((size, size), (size, size), (0, 0)), 'edge'))
    window = tuple(size + v for v in (cx - side / 2, cy - side / 2, cx + side / 2,
                                      cy + side / 2))
    out.append(np.asarray(padded.resize((size, size), Image.BILINEAR, box=window)))
  return np.stack(out)


def box_pool(grid: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """[N, B, C]: the mean of `grid` [N, h, w, C] over the cells each box [N, B, 4] covers."""
  n, h, w, _ = grid.shape
  ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
  inside_y = (ys[None, None] >= boxes[..., 0:1]) & (ys[None, None] <= boxes[..., 2:3])
  inside_x = (xs[None, None] >= boxes[..., 1:2]) & (xs[None, None] <= boxes[..., 3:4])
  weight = (inside_y[..., :, None] & inside_x[..., None, :]).astype(np.float32)  # N,B,h,w
  # A box smaller than a cell covers no cell centre: fall back to its centre cell.
  rows, cols = (np.asarray(a) for a in box_features.centre_cells(boxes, (h, w)))
  empty = weight.sum((-1, -2)) == 0
  b_idx = np.nonzero(empty)
  weight[b_idx[0], b_idx[1], rows[empty], cols[empty]] = 1.0
  weight /= weight.sum((-1, -2), keepdims=True)
  return np.einsum('nbhw,nhwc->nbc', weight, grid)


def representations(encoder: encoders.Encoder, data: dict) -> dict[str, np.ndarray]:
  """Each representation [num valid boxes, C] of the held-out boxes."""
  frames, boxes, valid = data['frames'], data['boxes'], data['valid']
  out = {k: [] for k in REPRESENTATIONS}
  for start in range(0, len(frames), 256):
    f, b = frames[start:start + 256], boxes[start:start + 256]
    feats = {k: np.asarray(v) for k, v in encoder.features(f).items()}
    out['column4'].append(np.asarray(box_features.gather(feats['block4'], b)))
    out['column3'].append(np.asarray(box_features.gather(feats['block3'], b)))
    out['boxpool4'].append(box_pool(feats['block4'], b))
  out = {k: np.concatenate(v)[valid] for k, v in out.items() if v}
  frame_of_box = np.nonzero(valid)[0]
  windows = crops(frames[frame_of_box], boxes[valid])
  out['crop'] = np.concatenate([np.asarray(encoder.features(windows[i:i + 256])['pre_logits'])
                                for i in range(0, len(windows), 256)])
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', default='', help='comma-separated name=workdir')
  parser.add_argument('--num_videos', type=int, default=200)
  parser.add_argument('--frames_per_video', type=int, default=8)
  parser.add_argument('--seed', type=int, default=1, help='held-out world (probe seed)')
  parser.add_argument('--init_seed', type=int, default=0)
  parser.add_argument('--scale', type=float, default=1.0,
                      help='upsample the frames by this factor before encoding')
  args = parser.parse_args()

  size = common.TINY_IMAGE_SIZE
  data = object_nn.held_out_boxes(args.num_videos, args.frames_per_video, image_size=size,
                                  seed=args.seed)
  labels = data['labels'][data['valid']]
  if args.scale != 1:
    from PIL import Image
    side = round(size * args.scale)
    data['frames'] = np.stack([np.asarray(Image.fromarray(f).resize((side, side),
                                                                    Image.BILINEAR))
                               for f in data['frames']])
  video = data['videos'][np.nonzero(data['valid'])[0]]   # The held-out video of each box.
  train = video < args.num_videos // 2
  print(f'{len(labels)} boxes ({train.sum()} to fit, {(~train).sum()} to score) of '
        f'{args.num_videos} held-out videos; majority class share '
        f'{np.bincount(labels[~train]).max() / (~train).sum():.3f}', flush=True)

  by_name = {'random init': encoders.random_encoder(common.base('tiny').model, size,
                                                     args.init_seed)}
  for spec in filter(None, args.runs.split(',')):
    name, workdir = spec.split('=')
    by_name[name] = encoders.restore_encoder(workdir)
  print('| encoder | ' + ' | '.join(REPRESENTATIONS) + ' | nn all | nn other videos |')
  print('| --- |' + ' --- |' * (len(REPRESENTATIONS) + 2))
  for name, encoder in by_name.items():
    reps = representations(encoder, data)
    cells = []
    for k in REPRESENTATIONS:
      x = reps[k]
      acc = linear_probe.probe_accuracy(x[train], labels[train], x[~train], labels[~train],
                                        synthetic.NUM_CLASSES)
      cells.append(f'{acc:.3f} ± {math.sqrt(acc * (1 - acc) / (~train).sum()):.3f}')
    columns = knn.l2_normalize(reps['column4'])   # As the object_nn probe measures it.
    cells += [f'{float(losses.nearest_neighbour_agreement(columns, labels, groups=g)):.3f}'
              for g in (None, video)]
    print(f'| {name} | ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
  main()
