"""Video-level InfoNCE prediction of future shot embeddings (VIVI, section 3.3, eq. 2).

Shot embeddings e_k are the average of the frame representations of shot k (parameter-free
average pooling p, section 4). A predictor turns the past shots into a prediction of the
shot m steps ahead; the critic scores it against the true shot and against negatives:

  predictor='lstm' (the paper's K=4 setting): an LSTM with 256 units reads e_1..e_{K-1};
    its state after shot k predicts every later shot k+m with a bilinear critic
    g(c_k, e) = e^T W_m c_k, one W_m per step m (the form of CPC [45]; Romijnders et al.
    section 4.1, "parameterize the critic g as a bilinear form").
  predictor='mlp' (the paper's K=2 setting): g(e, e') = phi1(e)^T phi2(e') with phi1, phi2
    MLPs with one hidden layer of 256 units (output width `hidden` too), predicting shot
    k+1 from shot k.

Negatives are all shot embeddings of the *other* videos of the global batch, not only those
at step k+m (footnote 3 of VIVI); the other shots of the same video are neither
positive nor negative. The loss is eq. (2) with the 1/N inside the log (N = number of
candidates), summed over the (k, m) predictions of a video and averaged over videos, as in
Romijnders et al. eq. (1).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vivi.objectives import losses, objective

DEFAULTS = dict(weight=0.04, predictor='lstm', hidden=256)


def prediction_pairs(num_shots: int, predictor: str) -> list[tuple[int, int]]:
  """(source shot k, target shot k+m), 0-indexed, that the predictor makes."""
  if num_shots < 2:
    raise ValueError(f'shot_infonce needs at least 2 shots per video, got {num_shots}')
  if predictor == 'lstm':
    return [(k, k + m) for m in range(1, num_shots) for k in range(num_shots - m)]
  if predictor == 'mlp':
    return [(k, k + 1) for k in range(num_shots - 1)]
  raise ValueError(f"shot_infonce.predictor must be 'lstm' or 'mlp', got {predictor!r}")


class Head(nn.Module):
  predictor: str
  hidden: int

  @nn.compact
  def __call__(self, features, batch, train):
    e = features['shot_embeddings']                       # [V, K, D]
    pairs = prediction_pairs(e.shape[1], self.predictor)
    if self.predictor == 'lstm':
      context = nn.RNN(nn.OptimizedLSTMCell(self.hidden), name='lstm')(e[:, :-1])
      steps = sorted({t - s for s, t in pairs})
      proj = {m: nn.Dense(e.shape[-1], use_bias=False, name=f'bilinear_step{m}') for m in steps}
      queries = jnp.stack([proj[t - s](context[:, s]) for s, t in pairs], axis=1)
      keys = e
    else:
      mlp = lambda name: nn.Sequential(
          [nn.Dense(self.hidden), nn.relu, nn.Dense(self.hidden)], name=name)
      queries = mlp('phi1')(e[:, [s for s, _ in pairs]])
      keys = mlp('phi2')(e)
    return {'queries': queries, 'keys': keys,
            'targets': jnp.array([t for _, t in pairs], jnp.int32)}


def make_head(cfg) -> nn.Module:
  return Head(predictor=cfg.predictor, hidden=cfg.hidden)


def loss(outputs, batch, cfg):
  q, keys, targets = outputs['queries'], outputs['keys'], outputs['targets']
  v, p, _ = q.shape
  k = keys.shape[1]
  scores = jnp.einsum('ipd,jkd->ipjk', q, keys, preferred_element_type=jnp.float32)
  same_video = jnp.eye(v, dtype=bool)[:, None, :, None]                  # [V, 1, V, 1]
  is_target = (jnp.arange(k)[None, :] == targets[:, None])[None, :, None, :]  # [1, P, 1, K]
  positive = same_video & is_target
  candidates = ~same_video | positive
  shape = (v * p, v * k)
  per_query = losses.masked_info_nce(
      scores.reshape(shape), jnp.broadcast_to(positive, scores.shape).reshape(shape),
      jnp.broadcast_to(candidates, scores.shape).reshape(shape))
  best = jnp.argmax(jnp.where(candidates, scores, -jnp.inf).reshape(shape), axis=-1)
  hit = jnp.take_along_axis(jnp.broadcast_to(positive, scores.shape).reshape(shape),
                            best[:, None], axis=-1)
  return jnp.mean(jnp.sum(per_query.reshape(v, p), axis=1)), {'accuracy': jnp.mean(hit)}


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames',), inputs_hint='the vivi sampler gives them')
