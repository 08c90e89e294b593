"""Parametric swap models: the stand-ins for a fitted behavioural model (METHOD sec. 3).

For a display with cued item k and cue distances d_j = |wrap(c_j - c_k)|, the mixture weights
are softmax([u, 0, f(d_1), ..., f(d_{N-1})]) over (guess, target, non-targets), with

  gaussian: f(d) = -d^2 / (2 w) + b   (swaps fall off with cue distance; b <= 0 lowers them)
  flat:     f(d) = b                  (a swap rate that ignores the display)
  none:     f(d) = -inf               (no swaps at all)

Remembered items are reported with von Mises noise of concentration kappa.
"""

from __future__ import annotations

import flax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import task as task_lib
from rnn_behaviour.behaviour import responses

SWAP_KINDS = ('gaussian', 'flat', 'none')


@flax.struct.dataclass
class ParametricSwapModel:
  """A parametric swap model; implements `responses.ResponseModel`."""
  kind: str = flax.struct.field(pytree_node=False, default='gaussian')
  width: float = 1.5
  bias: float = -1.0
  guess_logit: float = -3.0
  kappa: float = 8.0

  def swap_logit(self, distance):
    """f(d) for cue distances d (radians)."""
    if self.kind == 'gaussian':
      return -distance**2 / (2.0 * self.width) + self.bias
    if self.kind == 'flat':
      return jnp.full_like(distance, self.bias)
    if self.kind == 'none':
      return jnp.full_like(distance, -jnp.inf)
    raise ValueError(f'swap kind must be one of {SWAP_KINDS}, got {self.kind!r}')

  def mixture_weights(self, displays: task_lib.Displays) -> jnp.ndarray:
    """(K, N + 1) weights: guess, then item j (the target's logit is pinned at 0)."""
    logits = self.swap_logit(task_lib.cue_distances(displays))
    logits = jnp.where(task_lib.nontarget_mask(displays), logits, 0.0)
    return responses.weights_from_logits(jnp.asarray(self.guess_logit, jnp.float32), logits)

  def sample_responses(self, key, displays: task_lib.Displays, num_samples: int):
    """(K, S) responses drawn from each display's mixture."""
    return responses.sample_mixture(key, self.mixture_weights(displays), displays.report,
                                    self.kappa, num_samples)


def from_config(behaviour_config) -> ParametricSwapModel:
  """The parametric model a config's `behaviour` block names."""
  c = behaviour_config
  return ParametricSwapModel(kind=c.swap_kind, width=float(c.swap_width),
                             bias=float(c.swap_bias), guess_logit=float(c.guess_logit),
                             kappa=float(c.kappa))


def flat_bias_for_rate(swap_rate: float, num_items: int, guess_logit: float) -> float:
  """The flat logit b whose swap rate (all non-targets together) equals swap_rate."""
  if not 0.0 < swap_rate < 1.0:
    raise ValueError(f'swap_rate must be in (0, 1), got {swap_rate}')
  # w_swap = (N-1) e^b / (e^u + 1 + (N-1) e^b)  =>  e^b = w (e^u + 1) / ((N-1) (1 - w)).
  return float(np.log(swap_rate * (np.exp(guess_logit) + 1.0)
                      / ((num_items - 1) * (1.0 - swap_rate))))
