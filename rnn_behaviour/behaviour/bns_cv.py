"""Cross-validation of BNS models: k-fold held-out log predictive density, every fold fitted
in one vmapped SVI, a diverged fold refitted alone or skipped, finished folds resumable."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour.behaviour import bns as bns_lib
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import progress
from rnn_behaviour.behaviour import svi as svi_lib


@dataclasses.dataclass
class CrossValidation:
  """k-fold held-out log predictive density of one model.

  lpd: (T,) lpd_t of every trial, NaN for the trials of skipped folds.
  folds: list of dict(fold, num_heldout, status: 'ok' | 'recovered' | 'skipped', attempts:
    every SVI try as dict(learning_rate, diverged: reason or None)).
  """
  lpd: np.ndarray
  folds: list

  @property
  def skipped(self) -> list:
    return [f['fold'] for f in self.folds if f['status'] == 'skipped']

  @property
  def recovered(self) -> list:
    return [f['fold'] for f in self.folds if f['status'] == 'recovered']


def cross_validate(key, table: data_lib.TrialTable, spec: bns_lib.BNSSpec,
                   folds: np.ndarray, *, num_steps: int = 2000, learning_rate: float = 0.02,
                   num_samples: int = 200, guide: str = 'mvn', **kwargs) -> np.ndarray:
  """Held-out lpd of every trial by k-fold CV with SVI, (T,); see `cross_validate_folds`."""
  return cross_validate_folds(key, table, spec, folds, num_steps=num_steps,
                              learning_rate=learning_rate, num_samples=num_samples,
                              guide=guide, **kwargs).lpd


def cross_validate_folds(key, table: data_lib.TrialTable, spec: bns_lib.BNSSpec,
                         folds: np.ndarray, *,
                         num_steps: int = 2000, learning_rate: float = 0.02,
                         num_samples: int = 200, guide: str = 'mvn', max_restarts: int = 2,
                         restart_lr_factor: float = 0.3, tick=None,
                         label: str = 'BNS CV', done: dict | None = None,
                         on_fold=None) -> CrossValidation:
  """Held-out log predictive density of every trial by k-fold CV with SVI.

  lpd_t = log mean_s p(y_t | theta_s), theta_s drawn from the guide fitted to the other folds.
  All folds are first fitted in one vmapped optimisation (one compilation). A fold whose SVI
  diverged (`svi_divergence`, or non-finite guide parameters) is refitted alone from a new
  initialisation at `restart_lr_factor` times the step size, up to `max_restarts` times
  (status 'recovered'); if it still diverges its trials get NaN and the fold is 'skipped',
  with a warning, instead of failing the whole comparison.

  Args:
    key: PRNG key.
    table: trials; folds (T,) int fold of every trial.
    num_steps, learning_rate, guide: SVI settings; num_samples: guide draws per fold.
    tick: optional progress callable; label: names the model in progress/warning lines.
    done: optional {fold id: result} of folds finished by an earlier, interrupted run (what
      `on_fold` was given): they are read back, not refitted (their report says
      `reused: True`); only the other folds are fitted, still together.
    on_fold: optional callable(fold id, result) called as each fold is scored, result =
      dict(lpd: the fold's held-out lpd_t in table order, None where not finite; report: the
      fold's entry of `CrossValidation.folds`). A caller that saves it can resume (`done`).

  A fold's result depends only on its own key (split from `key` by fold position), so the
  folds fitted on a rerun are the same fits as in an uninterrupted run (up to float round-off
  of a vmap over fewer folds).
  """
  d, labels = bns_lib.make_data(spec, table)
  folds = np.asarray(folds)
  fold_ids = np.unique(folds)
  weights = jnp.asarray(folds[None, :] != fold_ids[:, None], jnp.float32)   # (K, T)
  make_svi = lambda: bns_lib.svi_parts(spec, labels, guide, learning_rate)[0]
  key_init, key_fit, key_post, key_retry = jax.random.split(key, 4)
  done = {int(k): v for k, v in (done or {}).items()}
  todo = [i for i, k in enumerate(fold_ids) if int(k) not in done]
  chunk = svi_lib.chunk_length(num_steps)
  position = {i: p for p, i in enumerate(todo)}
  svi, states, losses = _fit_together(make_svi(), d, weights, todo, key_init, key_fit,
                                      num_steps, chunk, label, tick)
  if done:
    progress.info(f'{label}: reusing {len(done)} of {len(fold_ids)} folds finished by an '
                  'earlier run')
  num_train = np.asarray(weights.sum(1))
  refit = dict(make_svi=make_svi, d=d, chunk=chunk, num_steps=num_steps,
               learning_rate=learning_rate, max_restarts=max_restarts,
               restart_lr_factor=restart_lr_factor, tick=tick)
  heldout = _heldout_density(svi, spec, labels, d, num_samples) if todo else None
  out = np.full(len(table), np.nan)
  report = []
  for i, k in enumerate(fold_ids):
    sel = folds == k
    if int(k) in done:
      out[sel] = [np.nan if x is None else x for x in done[int(k)]['lpd']]
      report.append(dict(done[int(k)]['report'], reused=True))
      continue
    state_i = jax.tree_util.tree_map(lambda a, p=position[i]: a[p], states)
    where = f'{label}: fold {i + 1}/{len(fold_ids)}'
    svi_i, state_i, status, attempts = _converged_fold(
        svi, state_i, losses[position[i]], int(num_train[i]), weights[i],
        jax.random.fold_in(key_retry, i), where, f'{label} fold {i + 1}/{len(fold_ids)}',
        refit)
    if status != 'skipped':
      # A refitted fold's state belongs to its own SVI object (svi.init_svi).
      heldout_i = (heldout if svi_i is svi else
                   _heldout_density(svi_i, spec, labels, d, num_samples))
      lpd = np.asarray(heldout_i(state_i, jax.random.fold_in(key_post, i)))
      if not np.all(np.isfinite(lpd[sel])):
        status = 'skipped'
        attempts.append(dict(learning_rate=None, diverged='non-finite held-out density'))
      else:
        out[sel] = lpd[sel]
    if status == 'skipped':
      progress.warning(f'{where} skipped (SVI diverged on every try); its {int(sel.sum())} '
                       "held-out trials are left out of this model's score")
    elif status == 'recovered':
      progress.warning(f'{where} recovered at learning rate '
                       f'{attempts[-1]["learning_rate"]:.3g}')
    report.append(dict(fold=int(k), num_heldout=int(sel.sum()), status=status,
                       attempts=attempts))
    if on_fold is not None:
      on_fold(int(k), dict(lpd=[float(x) if np.isfinite(x) else None for x in out[sel]],
                           report=report[-1]))
  return CrossValidation(lpd=out, folds=report)


def _fit_together(svi, d, weights, todo: list, key_init, key_fit, num_steps: int, chunk: int,
                  label: str, tick):
  """The folds `todo` (positions in `weights`' fold axis) fitted in one vmapped SVI from one
  initialisation of `svi` (new, used for this fit only), each with its own key:
  (svi, states, losses (F, steps)); (svi, None, None) if none."""
  if not todo:
    return svi, None, None
  state = svi_lib.init_svi(svi, key_init, d, weights[0])
  states = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (len(todo),) + a.shape), state)
  states = states._replace(rng_key=jax.random.split(key_fit, len(weights))[np.asarray(todo)])
  # The data is an argument (not a constant of the program), as in bns.run_chunks.
  run = jax.jit(jax.vmap(lambda s, data, w: svi_lib.run_svi(svi, s, data, w, chunk),
                         in_axes=(0, None, 0)))
  describe = lambda step, part: (f'{label}: {len(todo)} folds together, step '
                                 f'{step}/{num_steps}, mean loss '
                                 f'{float(np.nanmean(part)):.1f}')
  todo_weights = weights[np.asarray(todo)]
  states, losses = svi_lib.run_svi_chunked(lambda st: run(st, d, todo_weights), states,
                                           num_steps, describe, tick)
  return svi, states, losses


def _heldout_density(svi, spec, labels, d, num_samples: int):
  """A jitted (state, key) -> (T,) lpd_t = log mean_s p(y_t | theta_s), theta_s from the
  guide of `svi` (the SVI object that made `state`)."""
  bound = bns_lib.bound_model(spec, labels)

  @jax.jit
  def heldout(state, k, data):
    params = svi.get_params(state)
    latent = svi.guide.sample_posterior(k, params, sample_shape=(num_samples,))
    latent = {n: v for n, v in latent.items() if n in bns_lib.LATENT_SITES}
    ll = bns_lib.heldout_log_likelihood(bound, latent, data)
    return jax.scipy.special.logsumexp(ll, axis=0) - jnp.log(num_samples)

  return lambda state, k: heldout(state, k, d)


def _converged_fold(svi, state, losses, num_train: int, weight, key, where: str,
                    retry_label: str, refit: dict):
  """One fold's fit after the joint one (by `svi`): kept ('ok'), refitted alone at a lower step
  size while it diverges ('recovered', its tries named `retry_label`), or given up
  ('skipped'). Returns (svi of the state, state, status, attempts)."""
  learning_rate = refit['learning_rate']
  max_restarts, factor = refit['max_restarts'], refit['restart_lr_factor']
  reason = svi_lib.svi_divergence(losses, num_train)
  if reason is None and not svi_lib.params_finite(svi.get_params(state)):
    reason = 'non-finite guide parameters'
  attempts = [dict(learning_rate=float(learning_rate), diverged=reason)]
  if reason is None:
    return svi, state, 'ok', attempts
  if max_restarts == 0:
    return svi, state, 'skipped', attempts
  progress.warning(f'{where} diverged ({reason}); refitting it alone at a lower step size')
  try:
    svi, state, _, more = svi_lib.svi_with_restarts(
        key, refit['make_svi'], lambda s: bns_lib.run_chunks(s, refit['d'], refit['chunk']),
        refit['d'], weight, refit['num_steps'], learning_rate * factor, num_train,
        max_restarts - 1, factor, refit['tick'], label=retry_label)
  except FloatingPointError as e:
    attempts.append(dict(learning_rate=None, diverged=str(e)))
    return svi, state, 'skipped', attempts
  return svi, state, 'recovered', attempts + more


def make_folds(key, num_trials: int, num_folds: int) -> np.ndarray:
  """(T,) fold of every trial: a random permutation dealt round-robin (sizes differ by <= 1)."""
  if num_folds < 2:
    raise ValueError(f'cross-validation needs >= 2 folds, got {num_folds}')
  perm = np.asarray(jax.random.permutation(key, num_trials))
  folds = np.empty(num_trials, np.int64)
  folds[perm] = np.arange(num_trials) % num_folds
  return folds
