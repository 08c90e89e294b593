"""Which behavioural model generates a run's surrogate responses (config.behaviour).

Two models matter for a run: the *target* behaviour (the truth a network is judged against) and
the *training* behaviour, which differs from the target only for the limited-signature baselines
of METHOD sec. 6: 'no_swaps' (every remembered response reports the target) and 'flat' (swaps at
the target's mean rate, whatever the display).
"""

from __future__ import annotations

import os
from typing import Any

from etils import epath
import flax
import jax
import jax.numpy as jnp

from rnn_behaviour import task as task_lib
from rnn_behaviour.behaviour import parametric
from rnn_behaviour.behaviour import responses
from rnn_behaviour.behaviour import surrogate

SOURCES = ('parametric', 'bns')
SIGNATURES = ('full', 'no_swaps', 'flat')


@flax.struct.dataclass
class LimitedSignatureModel:
  """A behaviour whose swaps ignore the display: the base model's noise and guesses, with the
  remembered item drawn at a fixed non-target rate (0: no swaps).

  Sampling picks the reported item j first, then draws from the base model on the display with
  every report feature set to r_j, so that any remembered component lands on r_j with the base
  model's own noise (von Mises or stable, posterior draws included). The guess weight is the
  base model's on that display, which for swap functions of cue distance alone is unchanged.
  """
  base: Any
  nontarget_rate: float

  def item_probabilities(self, displays: task_lib.Displays):
    """(K, N) probability that a remembered response reports each item."""
    mask = task_lib.nontarget_mask(displays)
    return jnp.where(mask, self.nontarget_rate / (displays.num_items - 1),
                     1.0 - self.nontarget_rate)

  def mixture_weights(self, displays: task_lib.Displays) -> jnp.ndarray:
    guess = self.base.mixture_weights(displays)[:, :1]
    return jnp.concatenate([guess, (1.0 - guess) * self.item_probabilities(displays)], axis=1)

  def sample_responses(self, key, displays: task_lib.Displays, num_samples: int):
    key_item, key_base = jax.random.split(key)
    k, n = displays.num_displays, displays.num_items
    item = jax.random.categorical(key_item, jnp.log(self.item_probabilities(displays))[:, None],
                                  shape=(k, num_samples))
    chosen = jnp.take_along_axis(displays.report, item, axis=1)            # (K, S)
    repeat = lambda a: jnp.repeat(a, num_samples, axis=0)
    collapsed = task_lib.Displays(cue=repeat(displays.cue),
                                  report=jnp.broadcast_to(chosen.reshape(-1, 1), (k * num_samples, n)),
                                  cued=repeat(displays.cued))
    return self.base.sample_responses(key_base, collapsed, 1).reshape(k, num_samples)


def remembered_nontarget_rate(model, displays: task_lib.Displays) -> float:
  """Mean over displays of P(non-target | not a guess) under `model`."""
  w = model.mixture_weights(displays)
  swap = jnp.sum(jnp.where(task_lib.nontarget_mask(displays), w[:, 1:], 0.0), axis=1)
  return float(jnp.mean(swap / (1.0 - w[:, 0])))


def target_fit_dir(config, workdir: str | None = None) -> str:
  """The folder of the BNS fit a 'bns' target reads ('' for other sources)."""
  if config.behaviour.source != 'bns':
    return ''
  if config.behaviour.fit:
    return config.behaviour.fit
  return os.fspath(epath.Path(workdir) / 'behaviour') if workdir else ''


def target_model_from_config(config, workdir: str | None = None) -> responses.ResponseModel:
  """The behaviour config.behaviour names (the truth a network is judged against).

  'parametric': the parametric swap model of the config. 'bns': the posterior predictive of a
  fitted BNS model, read from config.behaviour.fit, or from `<workdir>/behaviour` if that is
  empty (the `all` mode fits it there first).
  """
  source = config.behaviour.source
  if source == 'parametric':
    return parametric.from_config(config.behaviour)
  if source == 'bns':
    fit_dir = target_fit_dir(config, workdir)
    if not fit_dir or not epath.Path(fit_dir).is_dir():
      raise FileNotFoundError(
          f'config.behaviour.fit: no behavioural fit at {fit_dir!r}; run --mode=fit_behaviour '
          'first or point config.behaviour.fit at its <workdir>/behaviour folder')
    return surrogate.load_response_model(fit_dir, config.task.num_items)
  raise ValueError(f'config.behaviour.source must be one of {SOURCES}, got {source!r}')


def training_model_from_config(config, workdir: str | None = None) -> responses.ResponseModel:
  """The behaviour a network is trained on: the target, or its limited signature."""
  model = target_model_from_config(config, workdir)
  signature = config.behaviour.signature
  if signature == 'full':
    return model
  if signature == 'no_swaps':
    return LimitedSignatureModel(base=model, nontarget_rate=0.0)
  if signature == 'flat':
    displays = task_lib.displays_from_config(jax.random.key(config.seed), 4096, config.task)
    return LimitedSignatureModel(base=model,
                                 nontarget_rate=remembered_nontarget_rate(model, displays))
  raise ValueError(f'config.behaviour.signature must be one of {SIGNATURES}, got {signature!r}')

