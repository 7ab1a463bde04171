"""The losses the objectives share, one place for each idea: the contrastive loss (InfoNCE),
the semi-hard triplet loss and its distances, the nearest-neighbour diagnostic, and the
softmax cross-entropy.

Everything here works on the *global* batch: under `jax.jit` with the batch sharded over the
mesh, XLA gathers what a comparison needs, so every anchor sees every other example of the
step, as the papers train.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pairwise_sq_distances(x: jax.Array) -> jax.Array:
  """Squared Euclidean distances [B, B] via one matmul; clamped at 0, zero diagonal.

  This is how TensorFlow's `triplet_semihard_loss` computes them, so the semi-hard
  selection below sees the same numbers.
  """
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1)
  d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
  d = jnp.maximum(d, 0.0)
  return d * (1.0 - jnp.eye(x.shape[0], dtype=d.dtype))


def semihard_triplet_loss(embeddings: jax.Array, labels: jax.Array, margin: float,
                          valid: jax.Array | None = None) -> tuple[jax.Array, dict]:
  """Triplet loss with semi-hard negative mining (Schroff et al. 2015, FaceNet).

  For every anchor a and positive p (same label, p != a), the negative is the *closest*
  negative that is farther from a than p is (semi-hard: d(a,p) < d(a,n)); if there is no
  such negative, the *farthest* negative; if a has no negative at all, distance 0. The loss
  is mean over positive pairs of max(d(a,p) - d(a,n) + margin, 0) with squared distances,
  exactly the rule of TensorFlow's `triplet_semihard_loss`, which VIVI (section 3.2, via
  [12, 33]) and the object level (Romijnders et al., equation 2) use.

  Runs in O(B^2 log B) time and O(B^2) memory (sort the negatives of each anchor once,
  then binary-search each positive distance) rather than TF's O(B^3) tiling, so a global
  batch of 16k frames is feasible.

  Args:
    embeddings: [B, D].
    labels: [B] int; equal labels are positives.
    margin: alpha of the hinge.
    valid: optional [B] bool; invalid (padding) rows take no part at all.

  Returns:
    (loss, metrics) with metrics 'num_positive_pairs' and 'fraction_semihard' (positive
    pairs that found a semi-hard negative).
  """
  b = embeddings.shape[0]
  if valid is None:
    valid = jnp.ones((b,), bool)
  d = pairwise_sq_distances(embeddings)
  both_valid = valid[:, None] & valid[None, :]
  same = labels[:, None] == labels[None, :]
  positive = same & both_valid & ~jnp.eye(b, dtype=bool)
  negative = ~same & both_valid

  neg_sorted = jnp.sort(jnp.where(negative, d, jnp.inf), axis=1)   # [anchor, rank]
  num_neg = jnp.sum(negative, axis=1)                                # [anchor]
  # Index of the first negative strictly farther than each candidate positive.
  first_farther = jax.vmap(lambda row, q: jnp.searchsorted(row, q, side='right'))(
      neg_sorted, d)                                                  # [anchor, positive]
  has_semihard = first_farther < num_neg[:, None]
  semihard = jnp.take_along_axis(neg_sorted, jnp.minimum(first_farther, b - 1), axis=1)
  farthest = jnp.take_along_axis(neg_sorted, jnp.maximum(num_neg - 1, 0)[:, None], axis=1)
  farthest = jnp.where(num_neg[:, None] > 0, farthest, 0.0)
  neg_dist = jnp.where(has_semihard, semihard, farthest)

  hinge = jnp.maximum(d - neg_dist + margin, 0.0)
  num_pos = jnp.sum(positive)
  loss = jnp.sum(jnp.where(positive, hinge, 0.0)) / jnp.maximum(num_pos, 1)
  metrics = {
      'num_positive_pairs': num_pos,
      'fraction_semihard': jnp.sum(positive & has_semihard) / jnp.maximum(num_pos, 1),
  }
  return loss, metrics


def nearest_neighbour_agreement(embeddings: jax.Array, labels: jax.Array,
                                valid: jax.Array | None = None,
                                groups: jax.Array | None = None) -> jax.Array:
  """Fraction of valid rows whose nearest valid neighbour (not itself) has the same label.

  The diagnostic of Romijnders et al. (Table 2) on box representations. With `groups` [B]
  (e.g. each box's video) a row's neighbours exclude its whole group, so that agreement
  through the same instance seen in another frame of its video does not count.
  Rows without any valid neighbour do not count.
  """
  b = embeddings.shape[0]
  valid = jnp.ones((b,), bool) if valid is None else valid
  excluded = (jnp.eye(b, dtype=bool) if groups is None
              else groups[:, None] == groups[None, :])
  d = pairwise_sq_distances(embeddings)
  d = jnp.where(valid[None, :] & ~excluded, d, jnp.inf)
  nearest = jnp.argmin(d, axis=1)
  counted = valid & jnp.isfinite(jnp.min(d, axis=1))
  agree = counted & (labels[nearest] == labels)
  return jnp.sum(agree) / jnp.maximum(jnp.sum(counted), 1)


def info_nce(positive: jax.Array, negatives: jax.Array) -> tuple[jax.Array, jax.Array]:
  """InfoNCE of positives against a shared set of negatives (van den Oord et al. 2018):

      loss_p = -log( exp(s_p) / (exp(s_p) + sum_n exp(s_n)) )

  in log-sum-exp form, so large critic values do not overflow. Every contrastive objective
  of the codebase is this, with its own choice of positives and negatives: VINCE's
  Multi-Pair NCE (equation 3: k positives per anchor share its negatives), VITO's multi-view
  InfoNCE (equation 3), DetCon's loss over masks, and VIVI's equation (2) via
  `masked_info_nce`.

  Args:
    positive: [..., P] critic values of P positives of one query.
    negatives: [..., N] critic values of the query's negatives; -inf marks a slot that is
      not a negative (it then adds nothing).

  Returns:
    ([..., P] losses, [..., P] bool: the positive beats every negative).
  """
  positive = positive.astype(jnp.float32)
  negatives = negatives.astype(jnp.float32)
  log_negatives = jax.nn.logsumexp(negatives, axis=-1, keepdims=True)
  loss = jnp.logaddexp(positive, log_negatives) - positive
  return loss, positive > jnp.max(negatives, axis=-1, keepdims=True)


def masked_info_nce(scores: jax.Array, positive: jax.Array, candidates: jax.Array,
                    subtract_log_count: bool = True) -> jax.Array:
  """Per-query InfoNCE with exactly one positive per row, given as masks over the scores:

      loss_q = -log( exp(s_q+) / ((1/C_q) * sum_{c in candidates_q} exp(s_qc)) )

  where C_q is the number of candidates of row q (the positive included). With
  `subtract_log_count` this is equation (2) of VIVI literally, the 1/N inside
  the log included (the loss is then minus a lower bound on mutual information); without
  it, `info_nce` of the positive against the other candidates. The two differ by a constant.

  Args:
    scores: [Q, C] critic values.
    positive: [Q, C] bool, one True per row.
    candidates: [Q, C] bool, the positive and the negatives of each row.

  Returns:
    [Q] losses.
  """
  scores = scores.astype(jnp.float32)
  candidates = candidates | positive
  pos = jnp.sum(jnp.where(positive, scores, 0.0), axis=-1, keepdims=True)
  loss, _ = info_nce(pos, jnp.where(candidates & ~positive, scores, -jnp.inf))
  loss = loss[..., 0]
  if subtract_log_count:
    loss = loss - jnp.log(jnp.sum(candidates, axis=-1).astype(jnp.float32))
  return loss


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def classification(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict]:
  """Mean softmax cross-entropy and top-1 accuracy: the loss of the classifying objectives
  (rotation, shot order, co-training)."""
  accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
  return jnp.mean(cross_entropy(logits, labels)), {'accuracy': accuracy}
