"""Independent NumPy references, written from the papers' equations with plain loops.

They share no code with `vivi/` and favour obviousness over speed (float64, loops).
"""

from __future__ import annotations

import numpy as np


def semihard_triplet(emb, labels, margin, valid=None):
  """FaceNet's semi-hard rule as TF's `triplet_semihard_loss` applies it.

  For each anchor a and positive p: the closest negative farther than p; else the farthest
  negative; else (no negative at all) distance 0. Mean of the hinge over positive pairs.
  """
  x = np.asarray(emb, np.float64)
  b = len(x)
  valid = np.ones(b, bool) if valid is None else np.asarray(valid)
  d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
  total, count = 0.0, 0
  for a in range(b):
    if not valid[a]:
      continue
    negatives = [d[a, n] for n in range(b) if valid[n] and labels[n] != labels[a]]
    for p in range(b):
      if p == a or not valid[p] or labels[p] != labels[a]:
        continue
      farther = [dn for dn in negatives if dn > d[a, p]]
      if farther:
        dn = min(farther)
      elif negatives:
        dn = max(negatives)
      else:
        dn = 0.0
      total += max(d[a, p] - dn + margin, 0.0)
      count += 1
  return total / max(count, 1)


def shot_info_nce(queries, keys, targets):
  """VIVI eq. (2) with footnote 3: for video i and prediction p, the positive is shot
  targets[p] of video i, the negatives every shot of every other video; the 1/N sits
  inside the log. Summed over predictions, averaged over videos."""
  q = np.asarray(queries, np.float64)
  k = np.asarray(keys, np.float64)
  v = q.shape[0]
  total = 0.0
  for i in range(v):
    for p, t in enumerate(targets):
      pos = q[i, p] @ k[i, t]
      cands = [pos] + [q[i, p] @ k[j, s] for j in range(v) if j != i for s in range(k.shape[1])]
      cands = np.array(cands)
      m = cands.max()
      total += -(pos - (m + np.log(np.mean(np.exp(cands - m)))))
  return total / v


def softmax_cross_entropy(logits, labels):
  z = np.asarray(logits, np.float64)
  z = z - z.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return float(np.mean([-logp[i, labels[i]] for i in range(len(labels))]))


def nearest_neighbour_agreement(emb, labels, valid, groups=None):
  """Seed 000 Table 2: share of valid rows whose nearest other valid row (of another group,
  when `groups` is given) has their label."""
  x = np.asarray(emb, np.float64)
  groups = np.arange(len(x)) if groups is None else groups
  hits, count = 0, 0
  for a in range(len(x)):
    if not valid[a]:
      continue
    others = [(np.sum((x[a] - x[b]) ** 2), b) for b in range(len(x))
              if groups[b] != groups[a] and valid[b]]
    if others:
      count += 1
      hits += labels[min(others)[1]] == labels[a]
  return hits / max(count, 1)


def sigmoid_bce_per_box(logits, labels, valid):
  """Binary cross-entropy over the label space, summed over classes, mean over valid boxes."""
  z = np.asarray(logits, np.float64)
  total, n = 0.0, 0
  for i in range(len(z)):
    if not valid[i]:
      continue
    t = np.zeros(z.shape[1])
    t[labels[i]] = 1.0
    p = 1 / (1 + np.exp(-z[i]))
    total += -np.sum(t * np.log(p) + (1 - t) * np.log(1 - p))
    n += 1
  return total / max(n, 1)


def soft_cross_entropy(logits, targets):
  z = np.asarray(logits, np.float64)
  z = z - z.max(-1, keepdims=True)
  logq = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return float(np.mean(-(np.asarray(targets) * logq).sum(-1)))


def _log_ratio(pos, negs):
  """-log(exp(pos) / (exp(pos) + sum(exp(negs)))) in float64."""
  pos = float(pos)
  return -pos + np.log(np.exp(pos) + np.sum(np.exp(np.asarray(negs, np.float64))))


def multi_pair_nce(f, g, memory, temperature):
  """VINCE Algorithm 1 / equation 3 with loops: every (anchor, positive of its video) pair
  against the positives of the other videos and the memory bank."""
  f, g, memory = (np.asarray(x, np.float64) for x in (f, g, memory))
  v, k, _ = f.shape
  losses = []
  for a in range(v):
    for i in range(k):
      negs = [f[a, i] @ g[b, j] / temperature for b in range(v) if b != a for j in range(k)]
      negs += [f[a, i] @ m / temperature for m in memory]
      for p in range(k):
        losses.append(_log_ratio(f[a, i] @ g[a, p] / temperature, negs))
  return np.mean(losses)


def moco_info_nce(q, k, memory, temperature):
  """MoCo's InfoNCE as a (1 + n - 1 + m)-way softmax cross-entropy, the positive key first
  (the other keys of the batch are negatives too, as VINCE's Algorithm 1 has it)."""
  q, k, memory = (np.asarray(x, np.float64) for x in (q, k, memory))
  losses = []
  for i in range(len(q)):
    others = [k[j] for j in range(len(k)) if j != i]
    logits = np.array([q[i] @ key for key in [k[i]] + others + list(memory)]) / temperature
    losses.append(softmax_cross_entropy(logits[None], [0]))
  return np.mean(losses)


def vito_info_nce(online, target, temperature):
  """VITO equation 3, summed over ordered view pairs i != j, mean over videos; negatives
  are the target projections of every view of the other videos."""
  online, target = np.asarray(online, np.float64), np.asarray(target, np.float64)
  v, n, _ = online.shape
  per_video = []
  for a in range(v):
    total = 0.0
    for i in range(n):
      negs = [online[a, i] @ target[b, j] / temperature
              for b in range(v) if b != a for j in range(n)]
      for j in range(n):
        if j != i:
          total += _log_ratio(online[a, i] @ target[a, j] / temperature, negs)
    per_video.append(total)
  return np.mean(per_video)


def detcon(online, target, valid, temperature):
  """DetCon's loss (the slides' equation): for every valid mask m of image b and view a,
  the online vector against the target vector of the same mask in the other view, with the
  target vectors (other view) of all other valid masks of the batch as negatives; mean
  over valid masks of the two views' average."""
  online, target = np.asarray(online, np.float64), np.asarray(target, np.float64)
  v, _, m, _ = online.shape
  items = [(b, i) for b in range(v) for i in range(m) if valid[b, i]]
  losses = []
  for b, i in items:
    both = 0.0
    for view in (0, 1):
      q = online[b, view, i]
      negs = [q @ target[c, 1 - view, j] / temperature for c, j in items if (c, j) != (b, i)]
      both += _log_ratio(q @ target[b, 1 - view, i] / temperature, negs)
    losses.append(both / 2)
  return np.mean(losses)


def moclr(online, target, temperature):
  """MoCLR's loss (Tian et al. 2021; SimCLR's InfoNCE with BYOL's predictor and EMA
  target): for image b and view a, the online prediction q = online[b, a] against the
  target projections of the other view, softmax over the batch's images with image b's as
  the positive; mean over images and views. online, target [B, 2, d]."""
  online, target = np.asarray(online, np.float64), np.asarray(target, np.float64)
  b = online.shape[0]
  losses = []
  for i in range(b):
    for view in (0, 1):
      logits = np.array([online[i, view] @ target[j, 1 - view] for j in range(b)])
      logits = logits / temperature
      losses.append(np.log(np.sum(np.exp(logits))) - logits[i])
  return np.mean(losses)


def masked_average_pool(feature_map, segments, num_masks):
  """DetCon masked pooling with loops: each feature cell weighted by the fraction of its
  pixels in the mask. feature_map [h, w, c]; segments [S, S] ints (-1 = none)."""
  h, w, c = feature_map.shape
  s = segments.shape[0]
  ch, cw = s // h, s // w
  out = np.zeros((num_masks, c))
  for m in range(num_masks):
    total, weight = np.zeros(c), 0.0
    for y in range(h):
      for x in range(w):
        frac = np.mean(segments[y * ch:(y + 1) * ch, x * cw:(x + 1) * cw] == m)
        total += frac * feature_map[y, x]
        weight += frac
    out[m] = total / weight if weight > 0 else 0.0
  return out
