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


def nearest_neighbour_agreement(emb, labels, valid):
  """Seed 000 Table 2: share of valid rows whose nearest other valid row has their label."""
  x = np.asarray(emb, np.float64)
  hits, count = 0, 0
  for a in range(len(x)):
    if not valid[a]:
      continue
    others = [(np.sum((x[a] - x[b]) ** 2), b) for b in range(len(x)) if b != a and valid[b]]
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
