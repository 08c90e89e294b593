"""Population dynamics: PCA of activity, and fixed and slow points with their Jacobian spectra.

Fixed points follow Sussillo & Barak (2013): for a velocity field v (for a discrete-time network
with inputs held constant, v(x) = F(x) - x, F the one-step map), minimise the speed
q(x) = 1/2 |v(x)|^2 from many initial states. Minima with q ~ 0 are fixed points; small
non-zero minima are slow points. Every function here takes plain arrays and pure callables, so
it works for any network: build v from the network's noise-free step with the inputs at their
delay-epoch value, e.g. `velocity_of_map(lambda x: step(params, x, delay_drive))`.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

# ------------------------------------------------------------------------------------- PCA


class PCA(NamedTuple):
  """mean (n,); components (c, n), orthonormal rows in order of variance; variance (c,);
  explained (c,): the fraction of the total variance along each component."""
  mean: jnp.ndarray
  components: jnp.ndarray
  variance: jnp.ndarray
  explained: jnp.ndarray


@functools.partial(jax.jit, static_argnames=('num_components',))
def pca(states, num_components: int | None = None) -> PCA:
  """Principal components of states (..., n), all leading axes pooled as observations.

  The n x n covariance is diagonalised rather than the data matrix, since trajectories have far
  more observations (T K S) than units.
  """
  x = states.reshape(-1, states.shape[-1])
  mean = x.mean(axis=0)
  centred = x - mean
  covariance = centred.T @ centred / max(x.shape[0] - 1, 1)
  variance, vectors = jnp.linalg.eigh(covariance)
  order = jnp.argsort(variance)[::-1]
  variance = jnp.clip(variance[order], 0.0)
  vectors = vectors[:, order].T
  explained = variance / jnp.maximum(variance.sum(), 1e-30)
  c = states.shape[-1] if num_components is None else num_components
  return PCA(mean=mean, components=vectors[:c], variance=variance[:c], explained=explained[:c])


@jax.jit
def project(states, fitted: PCA):
  """Coordinates of states (..., n) on the components: (..., c)."""
  return (states - fitted.mean) @ fitted.components.T


# ------------------------------------------------------------------------- fixed points


def velocity_of_map(step_map: Callable) -> Callable:
  """v(x) = F(x) - x for a discrete-time map F: the per-step displacement."""
  return lambda x: step_map(x) - x


@functools.partial(jax.jit, static_argnames=('num_points',))
def sample_initial_states(key, states, num_points: int, noise_scale: float = 0.0):
  """Random visited states (..., n), optionally jittered, as starts for the speed minimiser.

  Starting on the visited manifold finds the fixed points that shape behaviour rather than
  far-away ones; jitter explores its neighbourhood.

  Returns:
    (num_points, n).
  """
  key_pick, key_noise = jax.random.split(key)
  x = states.reshape(-1, states.shape[-1])
  picked = x[jax.random.randint(key_pick, (num_points,), 0, x.shape[0])]
  return picked + noise_scale * jax.random.normal(key_noise, picked.shape, picked.dtype)


def speed(velocity: Callable, x):
  """q(x) = 1/2 |v(x)|^2 for one state x (n,)."""
  v = velocity(x)
  return 0.5 * jnp.sum(v**2)


@functools.partial(jax.jit, static_argnames=('velocity', 'num_steps', 'polish_steps'))
def minimise_speed(velocity: Callable, initial_states, num_steps: int = 2000,
                   learning_rate: float = 1e-2, polish_steps: int = 10):
  """Minimises q from each initial state: Adam, then damped Gauss-Newton polishing.

  Adam moves every start into a basin cheaply; Levenberg-Marquardt steps
  x <- x - (J^T J + lambda I)^{-1} J^T v (J = dv/dx, lambda tried over several scales, the best
  kept only if it lowers q) then converge quadratically, so fixed points come out to machine
  precision instead of Adam's noise floor, and slow points (minima with q > 0, where J is
  near singular) stay stable.

  Args:
    velocity: pure function (n,) -> (n,); must be hashable (passed statically to jit).
    initial_states: (P, n).
    num_steps: Adam steps (cosine-decayed learning rate).
    learning_rate: Adam's initial learning rate.
    polish_steps: Gauss-Newton steps after Adam.

  Returns:
    (points (P, n), q (P,)).
  """
  q_fn = functools.partial(speed, velocity)
  optimiser = optax.adam(optax.cosine_decay_schedule(learning_rate, max(num_steps, 1), 1e-3))

  def adam_one(x0):
    def body(carry, _):
      x, state = carry
      grads = jax.grad(q_fn)(x)
      updates, state = optimiser.update(grads, state, x)
      return (optax.apply_updates(x, updates), state), None
    (x, _), _ = jax.lax.scan(body, (x0, optimiser.init(x0)), None, length=num_steps)
    return x

  def polish_one(x0):
    dampings = 10.0 ** jnp.arange(-8.0, 5.0, 2.0)

    def body(x, _):
      v = velocity(x)
      jac = jax.jacfwd(velocity)(x)
      jtj = jac.T @ jac
      scale = jnp.maximum(jnp.trace(jtj) / x.shape[0], 1e-30)
      eye = jnp.eye(x.shape[0], dtype=x.dtype)
      steps = jax.vmap(lambda d: jnp.linalg.solve(jtj + d * scale * eye, jac.T @ v))(dampings)
      candidates = x[None, :] - steps
      qs = jax.vmap(q_fn)(candidates)
      qs = jnp.where(jnp.isfinite(qs), qs, jnp.inf)
      best = jnp.argmin(qs)
      return jnp.where(qs[best] < q_fn(x), candidates[best], x), None

    x, _ = jax.lax.scan(body, x0, None, length=polish_steps)
    return x

  points = jax.vmap(adam_one)(jnp.asarray(initial_states))
  if polish_steps:
    points = jax.vmap(polish_one)(points)
  return points, jax.vmap(q_fn)(points)


def deduplicate(points, q, distance: float):
  """Indices of points kept greedily in order of increasing q, each farther than `distance`
  (Euclidean) from every point kept before it: the best representative of every cluster.

  Args:
    points: (P, n); q: (P,).

  Returns:
    (P',) int indices into points, in order of increasing q.
  """
  points = np.asarray(points)
  kept = []
  for i in np.argsort(np.asarray(q), kind='stable'):
    if not kept or np.min(np.linalg.norm(points[kept] - points[i], axis=1)) > distance:
      kept.append(i)
  return np.asarray(kept, dtype=np.int64)


def jacobians(fn: Callable, points):
  """Jacobians of fn (n,) -> (n,) at points (P, n): (P, n, n), by forward-mode AD."""
  return jax.vmap(jax.jacfwd(fn))(jnp.asarray(points))


class FixedPoints(NamedTuple):
  """Fixed and slow points of a velocity field.

  points (P', n): deduplicated minima with q < tolerance, in order of increasing q; q (P',);
  jacobians (P', n, n) and eigenvalues (P', n) complex, of the map F = x + v when
  `jacobian_of == 'map'` (stable iff |lambda| < 1) or of v itself when 'velocity' (for a
  continuous-time flow dx/dt = v: stable iff Re lambda < 0); candidates (P, n) and
  candidate_q (P,): every optimised start, before the tolerance and deduplication.
  """
  points: np.ndarray
  q: np.ndarray
  jacobians: np.ndarray
  eigenvalues: np.ndarray
  candidates: np.ndarray
  candidate_q: np.ndarray


JACOBIANS_OF = ('map', 'velocity')


def find_fixed_points(velocity: Callable, initial_states, *, tolerance: float = 1e-8,
                      dedup_distance: float = 1e-3, num_steps: int = 2000,
                      learning_rate: float = 1e-2, polish_steps: int = 10,
                      jacobian_of: str = 'map') -> FixedPoints:
  """Fixed and slow points of `velocity` with the spectra of their Jacobians.

  Args:
    velocity: pure function (n,) -> (n,), e.g. `velocity_of_map(F)`; hashable.
    initial_states: (P, n) starts (see `sample_initial_states`).
    tolerance: keep minima with q = 1/2 |v|^2 below it. Raise it to keep slow points too.
    dedup_distance: Euclidean distance under which two points count as one.
    num_steps, learning_rate, polish_steps: as `minimise_speed`.
    jacobian_of: 'map' (v(x) = F(x) - x of a discrete map, Jacobian of F = I + dv/dx) or
      'velocity' (Jacobian of v).

  Returns:
    FixedPoints (numpy arrays).
  """
  if jacobian_of not in JACOBIANS_OF:
    raise ValueError(f'jacobian_of must be one of {JACOBIANS_OF}, got {jacobian_of!r}')
  candidates, candidate_q = minimise_speed(velocity, jnp.asarray(initial_states), num_steps,
                                           learning_rate, polish_steps)
  candidates, candidate_q = np.asarray(candidates), np.asarray(candidate_q)
  good = np.flatnonzero(np.isfinite(candidate_q) & (candidate_q < tolerance))
  kept = good[deduplicate(candidates[good], candidate_q[good], dedup_distance)]
  points = candidates[kept]
  num_units = candidates.shape[1]
  if points.shape[0]:
    jac = np.asarray(jacobians(velocity, points))
    if jacobian_of == 'map':
      jac = jac + np.eye(num_units, dtype=jac.dtype)
    # numpy's eigvals: jnp.linalg.eig has no accelerator implementation.
    eigenvalues = np.linalg.eigvals(jac.astype(np.float64))
  else:
    jac = np.zeros((0, num_units, num_units), candidates.dtype)
    eigenvalues = np.zeros((0, num_units), np.complex128)
  return FixedPoints(points=points, q=candidate_q[kept], jacobians=jac,
                     eigenvalues=eigenvalues, candidates=candidates, candidate_q=candidate_q)
