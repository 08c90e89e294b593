"""Surrogate behaviour: the posterior predictive of a fitted BNS on new displays (METHOD sec. 3).

`load_response_model(fit_dir, set_size)` returns a `BNSResponseModel`, a `ResponseModel` like
the parametric one:

  mixture_weights(displays) -> (K, N + 1): the posterior-mean mixture weights (guess, then item
    j), i.e. E_theta[w(display; theta)], the probability that a posterior-predictive response
    comes from each component. With subject effects the mean is also over subjects (uniform).
  sample_responses(key, displays, num_samples) -> (K, S): every response uses its own posterior
    draw (and, with subject effects, its own uniformly drawn subject): a true posterior-
    predictive sample, so the response distribution of a display includes parameter
    uncertainty (and between-subject spread), not just the noise of one parameter setting.

The displays must have the fitted set size unless the fit shares its swap function across set
sizes. Distances on new displays need not be those of the experiment: the Fourier-basis swap
function is defined on the whole circle (where the data are silent, the band is wide).
"""

from __future__ import annotations

import functools
import os

from etils import epath
import flax
import jax
import jax.numpy as jnp

from rnn_behaviour import circular
from rnn_behaviour import task as task_lib
from rnn_behaviour.behaviour import bns as bns_lib
from rnn_behaviour.behaviour import bns_files
from rnn_behaviour.behaviour import responses
from rnn_behaviour.behaviour import stable

FIT_SUBDIR = 'bns_fit'


@flax.struct.dataclass
class BNSResponseModel:
  """Posterior draws of one set size's BNS parameters; implements `responses.ResponseModel`.

  swap_mean (S,), coef (S, B), guess_logit (S, G), emission (S, G) arrays: kappa (von Mises)
  or gamma and alpha (wrapped stable; alpha is then stored in `alpha`, else zeros). G: subjects
  (1 without subject effects).
  """
  swap_mean: jnp.ndarray
  coef: jnp.ndarray
  guess_logit: jnp.ndarray
  kappa: jnp.ndarray
  gamma: jnp.ndarray
  alpha: jnp.ndarray
  spec: bns_lib.BNSSpec = flax.struct.field(pytree_node=False)

  @property
  def num_draws(self) -> int:
    return self.swap_mean.shape[0]

  def _item_logits(self, displays: task_lib.Displays, draw):
    """Logits of the items (target 0), (K, ..., N) for draw indices `draw` (K, ...)."""
    k = displays.cued_cue()[:, None]
    dc = circular.wrap(displays.cue - k)
    dr = circular.wrap(displays.report - displays.cued_report()[:, None])
    feats = bns_lib.basis_features(self.spec, dc, dr)                       # (K, N, B)
    coef = self.coef[draw]                                                  # (K, ..., B)
    extra = draw.ndim - 1
    feats = feats.reshape(feats.shape[:1] + (1,) * extra + feats.shape[1:])
    f = self.swap_mean[draw][..., None] + jnp.sum(feats * coef[..., None, :], axis=-1)
    mask = task_lib.nontarget_mask(displays).reshape((feats.shape[0],) + (1,) * extra
                                                     + (displays.num_items,))
    return jnp.where(mask, f, 0.0)

  def mixture_weights(self, displays: task_lib.Displays) -> jnp.ndarray:
    """(K, N + 1) posterior-mean weights (guess first), averaged over draws and subjects."""
    k = displays.num_displays

    def one(draw):
      logits = self._item_logits(displays, jnp.full((k,), draw))            # (K, N)
      groups = self.guess_logit.shape[1]
      logits = jnp.broadcast_to(logits[:, None, :], (k, groups, displays.num_items))
      w = responses.weights_from_logits(self.guess_logit[draw][None, :], logits)  # (K, G, N+1)
      return w.mean(1)

    total = jax.lax.fori_loop(0, self.num_draws, lambda i, acc: acc + one(i),
                              jnp.zeros((k, displays.num_items + 1)))
    return total / self.num_draws

  # Jitted (the model is a pytree): called outside a jitted program (evaluation, the fit's
  # checks, the criteria) it is one program instead of each op compiling for new shapes.
  @functools.partial(jax.jit, static_argnames=('num_samples',))
  def sample_responses(self, key, displays: task_lib.Displays, num_samples: int):
    """(K, S) posterior-predictive responses, radians in [-pi, pi)."""
    k = displays.num_displays
    key_draw, key_group, key_resp = jax.random.split(key, 3)
    draw = jax.random.randint(key_draw, (k, num_samples), 0, self.num_draws)
    group = jax.random.randint(key_group, (k, num_samples), 0, self.guess_logit.shape[1])
    logits = self._item_logits(displays, draw)                               # (K, S, N)
    u = self.guess_logit[draw, group]
    weights = responses.weights_from_logits(u, logits)                      # (K, S, N+1)
    if self.spec.emission == 'von_mises':
      return responses.sample_mixture(key_resp, weights, displays.report,
                                      self.kappa[draw, group], num_samples)
    return stable.sample_stable_mixture(key_resp, weights, displays.report, self.gamma[draw, group],
                                 self.alpha[draw, group])


def from_fit(fit: bns_lib.BNSFit, set_size: int) -> BNSResponseModel:
  """The posterior predictive of `fit` for displays of `set_size` items."""
  groups = fit.labels.groups_of(fit.spec, set_size)
  fi = fit.labels.function_of(fit.spec, set_size)
  s = fit.samples
  take = lambda name: jnp.asarray(s[name][:, groups], jnp.float32)
  zeros = jnp.zeros((fit.num_samples, len(groups)), jnp.float32)
  vm = fit.spec.emission == 'von_mises'
  return BNSResponseModel(swap_mean=jnp.asarray(s['swap_mean'][:, fi], jnp.float32),
                          coef=jnp.asarray(s['coef'][:, fi], jnp.float32),
                          guess_logit=take('guess_logit'),
                          kappa=take('kappa') if vm else zeros,
                          gamma=zeros if vm else take('gamma'),
                          alpha=zeros if vm else take('alpha'), spec=fit.spec)


def load_fit(fit_dir: str) -> bns_lib.BNSFit:
  """The BNS fit saved under `fit_dir`: a `<workdir>/behaviour` folder written by
  `pipeline.fit_behaviour` (its `bns_fit/` subfolder is read), or a `bns_fit` folder itself."""
  directory = epath.Path(fit_dir) / FIT_SUBDIR
  if not (directory / 'fit.json').exists():
    directory = epath.Path(fit_dir)
  return bns_files.load(os.fspath(directory))


def load_response_model(fit_dir: str, set_size: int) -> BNSResponseModel:
  """The posterior-predictive response model saved under `fit_dir` (see `load_fit`), for
  displays of `set_size` items."""
  return from_fit(load_fit(fit_dir), set_size)
