"""Stochastic variational inference in equal chunks: progress between chunks, an early stop
on NaN, a divergence test on the loss trace, and restarts at a lower step size.

Used by the BNS fits (bns.py) and their cross-validation (bns_cv.py); nothing here knows the
model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnn_behaviour.behaviour import progress


def with_learning_rate(state, learning_rate: float):
  """An SVI state whose Adam step size is `learning_rate` (every fold's, if vmapped)."""
  old = optax.tree_utils.tree_get(state, 'learning_rate')
  return optax.tree_utils.tree_set(state, learning_rate=jnp.full_like(old, learning_rate))


def init_svi(svi, key, d, trial_weight):
  """`svi.init` as one compiled program; use `svi` for this initialisation only.

  numpyro's `SVI.init` runs the model and the guide op by op (the guide's prototype trace, the
  search for a valid start), and each op compiles for its shapes: 15-17 s for a BNS fit on CPU,
  against ~4 s for the same work jitted. Jitted, the guide keeps traced values from its set-up,
  which later programs read only for shapes and structure, but which a second `init` of the same
  guide would use: so every initialisation (each restart) gets a new SVI object and guide.
  """
  return jax.jit(svi.init)(key, d, trial_weight)


def run_svi(svi, state, d, trial_weight, num_steps):
  """`num_steps` SVI steps from `state` by `SVI.run` (no progress bar: a `lax.scan`, so it
  jits and vmaps over folds); returns (state, losses (num_steps,))."""
  result = svi.run(None, num_steps, d, trial_weight, progress_bar=False, init_state=state)
  return result.state, result.losses


def chunk_length(num_steps: int, max_chunks: int = 20) -> int:
  """The largest divisor-based chunk so that num_steps splits into <= max_chunks equal parts.

  Equal chunks compile once; between chunks the host logs progress and stops early on NaN.
  """
  for n in range(min(max_chunks, num_steps), 0, -1):
    if num_steps % n == 0:
      return num_steps // n
  return num_steps


def run_svi_chunked(run_chunk, state, num_steps: int, describe=None, tick=None):
  """Runs `run_chunk(state) -> (state, losses (..., c))` until `num_steps`, in equal chunks.

  Args:
    run_chunk: a jitted function taking and returning an SVI state (any leading fold axis),
      doing `chunk_length(num_steps)` steps.
    state: the initial state.
    num_steps: total steps.
    describe: optional `f(done, losses) -> str` for progress lines.
    tick: a `progress.Throttle` (or any callable taking a message) for progress lines.

  Returns:
    (state, losses (..., steps run)): stops early once every loss of the last chunk is
    non-finite (a NaN never recovers), so a diverged run costs less than a full one.
  """
  chunk = chunk_length(num_steps)
  losses = []
  done = 0
  while done < num_steps:
    state, part = run_chunk(state)
    part = np.asarray(part)
    losses.append(part)
    done += chunk
    if tick is not None and describe is not None:
      tick(describe(done, part))
    if not np.isfinite(part[..., -1]).any():
      break
  return state, np.concatenate(losses, axis=-1)


# A fit's loss trace is "exploding" when its last tenth averages this many nats above the best
# tenth: SVI's single-sample ELBO is noisy, but a run that climbs back up by this much from
# its best has left the basin it found (seen before NaNs on large data sets).
EXPLODE_NATS_PER_TRIAL = 0.5


def svi_divergence(losses, num_trials: int) -> str | None:
  """Why an SVI loss trace (steps,) counts as diverged, or None when it does not.

  Diverged: any non-finite loss, or the mean loss of the final tenth exceeding the lowest
  tenth's mean by more than `EXPLODE_NATS_PER_TRIAL` x max(num_trials, 10) nats.
  """
  losses = np.asarray(losses, np.float64)
  if not np.all(np.isfinite(losses)):
    first = int(np.argmin(np.isfinite(losses)))
    return f'non-finite ELBO loss from step {first + 1} of {len(losses)}'
  tenth = max(len(losses) // 10, 1)
  means = np.array([losses[i:i + tenth].mean() for i in range(0, len(losses) - tenth + 1,
                                                                 tenth)])
  rise = float(means[-1] - means.min())
  if rise > EXPLODE_NATS_PER_TRIAL * max(num_trials, 10):
    return f'exploding ELBO loss: the last tenth is {rise:.3g} nats above the best tenth'
  return None


def params_finite(params) -> bool:
  return all(bool(np.all(np.isfinite(np.asarray(v)))) for v in jax.tree_util.tree_leaves(params))


def svi_with_restarts(key, make_svi, make_run, d, trial_weight, num_steps, learning_rate,
                      num_trials, max_restarts, lr_factor, tick=None, label='BNS SVI'):
  """SVI from a fresh init, restarted at a lower step size while it diverges.

  Args:
    make_svi: `() -> SVI`, a new SVI object (and guide) for each try (see `init_svi`).
    make_run: `svi -> run`, run a jitted `(state, trial_weight) -> (state, losses)` doing
      `chunk_length(num_steps)` steps of that SVI.
    learning_rate: the first try's step size; each restart multiplies it by `lr_factor`.
    label: names the fit in progress and warning lines.

  Returns:
    (svi, state, losses, attempts): the SVI object of the returned state (its guide reads the
    state's parameters); `attempts` lists every try as dict(learning_rate, diverged: reason or
    None); the last is the one returned.

  Raises:
    FloatingPointError when the last try still diverges.
  """
  attempts = []
  lr = float(learning_rate)
  for attempt in range(max_restarts + 1):
    # The first try uses `key` itself, so a fit that never diverges is the plain SVI fit.
    key_init = key if attempt == 0 else jax.random.fold_in(key, attempt)
    svi = make_svi()
    run = make_run(svi)
    state = with_learning_rate(init_svi(svi, key_init, d, trial_weight), lr)
    describe = lambda done, part, lr=lr: (f'{label}: step {done}/{num_steps}, loss '
                                          f'{float(np.nanmean(part)):.1f} (lr {lr:.3g})')
    state, losses = run_svi_chunked(lambda st: run(st, trial_weight), state, num_steps,
                                    describe, tick)
    reason = svi_divergence(losses, num_trials)
    if reason is None and not params_finite(svi.get_params(state)):
      reason = 'non-finite guide parameters'
    attempts.append(dict(learning_rate=lr, diverged=reason))
    if reason is None:
      return svi, state, losses, attempts
    if attempt < max_restarts:
      progress.warning(f'{label} diverged ({reason}) at learning rate {lr:.3g}; restarting '
                       f'from a new initialisation at {lr * lr_factor:.3g}')
    lr *= lr_factor
  raise FloatingPointError(
      f'{label} diverged on every one of {max_restarts + 1} tries ({attempts[-1]["diverged"]}); '
      'lower config.fit.svi_learning_rate or raise config.fit.svi_max_restarts')
