"""Two- and three-component mixture models of delayed-estimation responses (METHOD sec. 2).

Three components (Bays, Catalao & Husain 2009), for a trial with cued item k of N:

  p(y) = pT vM(y; r_k, kappa) + pN / (N - 1) sum_{j != k} vM(y; r_j, kappa) + pU / (2 pi).

Two components (Zhang & Luck 2008) is pN = 0. With N = 1 there are no non-targets and pN is 0.

Fits are made per cell (subject x set size x condition), all cells and several starting points
at once: the trials of every cell are padded to a common length and masked, and expectation-
maximisation (EM) runs on the (start, cell) batch under one `jax.jit`. EM suits this model:
the E-step is a softmax over components, the M-step is closed form for the weights, and for
kappa it is the inverse of A(kappa) = I1(kappa) / I0(kappa) at the responsibility-weighted mean
resultant length, solved by Newton's method. The cosines of the errors are constant across
iterations and are computed once, so an iteration costs a few multiply-adds and exps a trial.
The start with the highest final log-likelihood wins.

Also here: a slow scipy reference search used to check the EM fits (`reference_fit`), k-fold
held-out log predictive density, and the tidy CSV writer (`write_fits_csv`, columns
`FIT_COLUMNS`). The same models in NumPyro with priors are in mixture_bayes.py.
"""

from __future__ import annotations

import dataclasses
import functools

from etils import epath
import flax
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special

from rnn_behaviour import circular
from rnn_behaviour import files
from rnn_behaviour.behaviour import data as data_lib

MODELS = ('two_component', 'three_component')
FIT_COLUMNS = ('subject', 'set_size', 'condition', 'model', 'kappa', 'sd', 'p_t', 'p_n', 'p_u',
               'loglik', 'n', 'aic', 'bic', 'warning')
_LOG_2PI = float(np.log(2.0 * np.pi))
KAPPA_MIN, KAPPA_MAX = 1e-3, 1e4


@flax.struct.dataclass
class CellData:
  """Trials grouped into C cells, padded to L trials and N' = N_max - 1 non-targets.

  cos_target: (C, L) cos(y - r_k).   cos_nontarget: (C, L, N') cos(y - r_j).
  nontarget_mask: (C, L, N') real non-targets.   trial_mask: (C, L) real (and selected) trials.
  trial_index: (C, L) row of each slot in the source table (-1 for padding).
  response: (C, L) y (0 at padding).   centres: (C, L, 1 + N') r_k, then the r_j (0 at pads):
  what the NumPyro model's observed site needs.
  """
  response: jnp.ndarray
  centres: jnp.ndarray
  cos_target: jnp.ndarray
  cos_nontarget: jnp.ndarray
  nontarget_mask: jnp.ndarray
  trial_mask: jnp.ndarray
  trial_index: jnp.ndarray

  @property
  def num_cells(self):
    return self.cos_target.shape[0]

  def with_trials(self, keep) -> 'CellData':
    """The same cells with only trials where `keep` (C, L) is True counted (for k-fold CV)."""
    return self.replace(trial_mask=self.trial_mask & keep)


def cell_data(table: data_lib.TrialTable):
  """Groups a table into (subject, set_size, condition) cells.

  Returns:
    cells: list of (subject, set_size, condition) tuples, sorted.
    data: CellData with one row per cell.
  """
  cells, index = data_lib.cell_labels(table)
  counts = np.bincount(index, minlength=len(cells))
  length = int(counts.max())
  err = table.error()
  _, _, nt_report, nt_mask = table.nontargets()
  nt_err = circular.wrap(table.response[:, None] - nt_report)
  n_nt = max(nt_mask.shape[1], 1)
  cos_t = np.zeros((len(cells), length))
  cos_n = np.zeros((len(cells), length, n_nt))
  mask_n = np.zeros((len(cells), length, n_nt), bool)
  trial_index = np.full((len(cells), length), -1, np.int64)
  response = np.zeros((len(cells), length))
  centres = np.zeros((len(cells), length, 1 + n_nt))
  # Stable sort keeps each cell's trials in table order.
  order = np.argsort(index, kind='stable')
  slot = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
  rows, cols = index[order], slot
  cos_t[rows, cols] = np.cos(err[order])
  if nt_mask.shape[1]:
    cos_n[rows, cols] = np.where(nt_mask[order], np.cos(nt_err[order]), 0.0)
    mask_n[rows, cols] = nt_mask[order]
  trial_index[rows, cols] = order
  response[rows, cols] = table.response[order]
  centres[rows, cols, 0] = table.target_report()[order]
  if nt_mask.shape[1]:
    centres[rows, cols, 1:] = np.where(nt_mask[order], nt_report[order], 0.0)
  return cells, CellData(response=jnp.asarray(response, jnp.float32),
                         centres=jnp.asarray(centres, jnp.float32),
                         cos_target=jnp.asarray(cos_t, jnp.float32),
                         cos_nontarget=jnp.asarray(cos_n, jnp.float32),
                         nontarget_mask=jnp.asarray(mask_n),
                         trial_mask=jnp.asarray(trial_index >= 0),
                         trial_index=jnp.asarray(trial_index))


def _log_components(params, d: CellData):
  """Per-trial log of each component's weighted density, (..., C, L, 2 + N').

  params: dict of (..., C) arrays kappa, p_t, p_n, p_u.
  """
  kc = params['kappa'][..., None]            # (..., C, 1): broadcasts over trials.
  kn = kc[..., None]                         # (..., C, 1, 1): ... and non-targets.
  log_t = jnp.log(params['p_t'])[..., None] + circular.log_von_mises_from_cos(d.cos_target, kc)
  num_nt = jnp.maximum(d.nontarget_mask.sum(-1), 1)
  log_pn = jnp.log(params['p_n'])[..., None] - jnp.log(num_nt)
  log_n = jnp.where(d.nontarget_mask,
                    log_pn[..., None] + circular.log_von_mises_from_cos(d.cos_nontarget, kn),
                    -jnp.inf)
  log_u = jnp.broadcast_to(jnp.log(params['p_u'])[..., None] - _LOG_2PI, log_t.shape)
  return jnp.concatenate([log_t[..., None], log_u[..., None], log_n], axis=-1)


def trial_log_likelihood(params, d: CellData):
  """log p(y) of every trial slot, (..., C, L); 0 at masked slots."""
  ll = jax.scipy.special.logsumexp(_log_components(params, d), axis=-1)
  return jnp.where(d.trial_mask, ll, 0.0)


def log_likelihood(params, d: CellData):
  """Summed log-likelihood per cell, (..., C)."""
  return trial_log_likelihood(params, d).sum(-1)


def a1_inverse(r):
  """kappa with I1(kappa) / I0(kappa) = r, for r in [0, 1): Fisher's approximation + Newton."""
  r = jnp.clip(r, 0.0, 1.0 - 1e-7)
  # 1 / (r^3 - 4 r^2 + 3 r) written as a product: the sum cancels to 0 in float32 near r = 1,
  # and an infinite guess would make Newton's I1/I0 = inf/inf (NaN); the clip keeps it finite.
  guess = jnp.where(r < 0.53, 2 * r + r**3 + 5 * r**5 / 6,
                    jnp.where(r < 0.85, -0.4 + 1.39 * r + 0.43 / (1 - r),
                              1 / (r * (1 - r) * (3 - r))))
  k = jnp.clip(guess, KAPPA_MIN, KAPPA_MAX)

  def newton(k, _):
    a = jax.scipy.special.i1e(k) / jax.scipy.special.i0e(k)
    slope = 1.0 - a / k - a**2  # dA/dkappa.
    return jnp.clip(k - (a - r) / jnp.maximum(slope, 1e-12), KAPPA_MIN, KAPPA_MAX), None

  k, _ = jax.lax.scan(newton, k, None, length=4)
  return k


def _em_step(params, d: CellData, three: bool):
  log_c = _log_components(params, d)
  resp = jnp.exp(log_c - jax.scipy.special.logsumexp(log_c, -1, keepdims=True))
  resp = jnp.where(d.trial_mask[..., None], resp, 0.0)
  n = jnp.maximum(d.trial_mask.sum(-1), 1)
  r_t, r_u, r_n = resp[..., 0], resp[..., 1], resp[..., 2:]
  p_t, p_u = r_t.sum(-1) / n, r_u.sum(-1) / n
  p_n = r_n.sum((-1, -2)) / n if three else jnp.zeros_like(p_t)
  weight = r_t.sum(-1) + r_n.sum((-1, -2))
  resultant = (r_t * d.cos_target).sum(-1) + (r_n * d.cos_nontarget).sum((-1, -2))
  kappa = a1_inverse(resultant / jnp.maximum(weight, 1e-12))
  # Keep probabilities off exactly 0 so that their logs stay finite (p_n of the two-component
  # model is pinned at 0 and enters only through log(0) = -inf in a masked-out column).
  clip = lambda p: jnp.clip(p, 1e-10, 1.0)
  has_nt = d.nontarget_mask.any((-1, -2))
  p_n = jnp.where(has_nt, clip(p_n), 0.0) if three else p_n
  return dict(kappa=kappa, p_t=clip(p_t), p_n=p_n, p_u=clip(p_u))


def _starts(num_cells, three: bool):
  """A fixed grid of starting points, (R, C) each."""
  kappas = (2.0, 8.0, 30.0)
  if three:
    weights = ((0.9, 0.05, 0.05), (0.6, 0.3, 0.1), (0.5, 0.1, 0.4), (0.3, 0.35, 0.35))
  else:
    weights = ((0.95, 0.0, 0.05), (0.7, 0.0, 0.3), (0.4, 0.0, 0.6))
  grid = [(k,) + w for k in kappas for w in weights]
  arr = np.array(grid, np.float32)
  tile = lambda col: jnp.asarray(np.repeat(arr[:, col:col + 1], num_cells, axis=1))
  return dict(kappa=tile(0), p_t=tile(1), p_n=tile(2), p_u=tile(3))


# EM iterations by model: on Bays (2009) the three-component fits are within 0.005 of a
# 52-start L-BFGS search after 200 iterations (0.002 after 300); two-component ones after 50.
DEFAULT_ITERATIONS = {True: 250, False: 80}


def fit_em(d: CellData, three: bool = True, num_iterations: int | None = None):
  """`_fit_em` with the model's default number of iterations."""
  num_iterations = num_iterations or DEFAULT_ITERATIONS[three]
  return _fit_em(d, three=three, num_iterations=num_iterations)


@functools.partial(jax.jit, static_argnames=('three', 'num_iterations'))
def _fit_em(d: CellData, three: bool, num_iterations: int):
  """Maximum-likelihood fit of every cell from every start of `_starts` by EM.

  Args:
    d: CellData of C cells.
    three: three-component model (else two-component, pN = 0).
    num_iterations: EM iterations per start.

  Returns:
    dict of (C,) arrays kappa, p_t, p_n, p_u, loglik (summed over the cell's counted trials),
    each cell's best start.
  """
  params = _starts(d.num_cells, three)
  # Cells with no non-targets (set size 1) are fitted with pN = 0 from the start: pN mass
  # has no density there and would only slow EM down.
  has_nt = d.nontarget_mask.any((-1, -2))
  params['p_n'] = jnp.where(has_nt, params['p_n'], 0.0)
  norm = params['p_t'] + params['p_n'] + params['p_u']
  params = {k: (v / norm if k != 'kappa' else v) for k, v in params.items()}
  # Empty cells (possible inside a CV fold) keep their start and have a zero log-likelihood.
  step = lambda p, _: (_em_step(p, d, three), None)
  params, _ = jax.lax.scan(step, params, None, length=num_iterations)
  params['p_n'] = jnp.where(has_nt, params['p_n'], 0.0)
  ll = log_likelihood(params, d)
  best = jnp.argmax(jnp.where(jnp.isfinite(ll), ll, -jnp.inf), axis=0)
  pick = lambda a: jnp.take_along_axis(a, best[None], axis=0)[0]
  out = {k: pick(v) for k, v in params.items()}
  out['loglik'] = pick(ll)
  return out


# --------------------------------------------------------------------------------------------
# Polish: a direct optimiser from EM's end and from the boundary faces.
# --------------------------------------------------------------------------------------------

# The polish's optimiser: SLSQP with box bounds. Its tolerance sits far below the 1e-3 nats
# asked of a fit. (L-BFGS-B found the same optima but its BLAS calls took 7 ms each on a loaded
# 2-core machine, 10x slower in all: OpenBLAS threads contending over 3-vector products.)
_POLISH_METHOD, _POLISH_OPTIONS = 'SLSQP', dict(maxiter=500, ftol=1e-13)


def _cell_arrays(d: CellData, cell: int):
  """Cell `cell`'s counted trials as float64 numpy: cos_target (L,), cos_nontarget (L, N'),
  nontarget_mask (L, N'), and the number of non-targets of each trial (L,)."""
  keep = np.asarray(d.trial_mask[cell])
  ct = np.asarray(d.cos_target[cell], np.float64)[keep]
  cn = np.asarray(d.cos_nontarget[cell], np.float64)[keep]
  mn = np.asarray(d.nontarget_mask[cell])[keep]
  return ct, cn, mn, np.maximum(mn.sum(-1), 1)


def _unpack(x, three: bool):
  """(log kappa, a, b) -> kappa, p_t, p_n, p_u: p_t = a, p_n = (1 - a) b, p_u = (1 - a)(1 - b).

  Box bounds on a and b in [0, 1] cover the whole simplex, its faces included (b = 1: no
  guessing), which softmax logits reach only in the limit; the two-component model has b = 0.
  """
  kappa, a = np.exp(x[0]), x[1]
  b = x[2] if three else 0.0
  return kappa, a, (1 - a) * b, (1 - a) * (1 - b)


def _neg_loglik_and_grad(x, arrays, three: bool):
  """Minus the cell's log-likelihood at x = (log kappa, a[, b]) (`_unpack`) and its gradient.

  In float64 and in log space: the von Mises log density is finite for every kappa, so a
  weight of exactly 0 costs nothing (its component is -inf inside a logsumexp).
  dL/dp_c = sum_t dens_c(t) / f(t); dL/dkappa = sum over von Mises terms of their share of
  f(t) times (cos - A(kappa)), A = I1 / I0.
  """
  ct, cn, mn, num_nt = arrays
  kappa, p_t, p_n, p_u = _unpack(x, three)
  with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
    log_norm = np.log(2 * np.pi * scipy.special.i0e(kappa))
    z_t = kappa * (ct - 1) - log_norm                                           # (L,)
    z_n = np.where(mn, kappa * (cn - 1) - log_norm, -np.inf)                    # (L, N')
    top = z_n.max(-1) if z_n.shape[-1] else np.full_like(z_t, -np.inf)
    top = np.where(np.isfinite(top), top, 0.0)
    # log of the mean non-target density; -inf for trials without non-targets.
    z_mn = top + np.log(np.exp(z_n - top[:, None]).sum(-1)) - np.log(num_nt)
    lw_t, lw_n, lw_u = np.log(p_t), np.log(p_n), np.log(p_u)
    c_t, c_n, c_u = lw_t + z_t, lw_n + z_mn, np.full_like(z_t, lw_u - _LOG_2PI)
    m = np.maximum(np.maximum(c_t, c_n), c_u)
    log_f = m + np.log(np.exp(c_t - m) + np.exp(c_n - m) + np.exp(c_u - m))  # (L,)
    ratio = lambda z: np.exp(np.minimum(z - log_f, 700.0))
    d_t, d_n, d_u = ratio(z_t).sum(), ratio(z_mn).sum(), ratio(-_LOG_2PI).sum()
    a_k = scipy.special.i1e(kappa) / scipy.special.i0e(kappa)
    share_t = np.exp(c_t - log_f)
    share_n = np.where(mn, np.exp(lw_n + z_n - np.log(num_nt)[:, None] - log_f[:, None]), 0.0)
  d_kappa = (share_t * (ct - a_k)).sum() + (share_n * np.where(mn, cn - a_k, 0.0)).sum()
  a = x[1]
  b = x[2] if three else 0.0
  grad = [kappa * d_kappa, d_t - b * d_n - (1 - b) * d_u]
  if three:
    grad.append((1 - a) * (d_n - d_u))
  return -float(log_f.sum()), -np.asarray(grad, np.float64)


def polish(d: CellData, params: dict, three: bool):
  """Finishes EM's fit of every cell with a direct optimiser, from EM's end and the faces.

  EM creeps when the maximum lies on a face of the simplex (a guess weight of 0, say): each
  iteration shrinks the weight by a near-constant factor, and hundreds of iterations leave it
  short. A direct optimiser (SLSQP) with the weights box-bounded reaches the face exactly. Starts:
  EM's parameters, and the same with pU = 0 and (three-component) with pN = 0; the best of
  these and of EM itself is kept, so the log-likelihood never falls below EM's.

  Args:
    d: CellData of C cells (trial_mask says which trials count).
    params: dict of (C,) arrays kappa, p_t, p_n, p_u (EM's result).
    three: the three-component model.

  Returns:
    dict of (C,) float64 numpy arrays kappa, p_t, p_n, p_u, loglik.
  """
  params = {k: np.asarray(v, np.float64) for k, v in params.items() if k != 'loglik'}
  has_nt = np.asarray(d.nontarget_mask.any((-1, -2)))
  counted = np.asarray(d.trial_mask.sum(-1))
  out = {k: v.copy() for k, v in params.items()}
  out['loglik'] = np.zeros(len(counted))
  bounds_k = (np.log(KAPPA_MIN), np.log(KAPPA_MAX))
  for c in range(len(counted)):
    if counted[c] == 0:
      continue                                          # An empty cell keeps EM's start.
    three_c = three and bool(has_nt[c])
    arrays = _cell_arrays(d, c)
    kappa = float(np.clip(params['kappa'][c], KAPPA_MIN, KAPPA_MAX))
    a = float(np.clip(params['p_t'][c], 0.0, 1.0))
    rest = params['p_n'][c] + params['p_u'][c]
    b = float(params['p_n'][c] / rest) if rest > 0 else 0.5
    if not np.all(np.isfinite([kappa, a, b])):        # EM failed: start from the middle.
      kappa, a, b = 5.0, 0.8, 0.5
    x_em = np.array([np.log(kappa), a] + ([b] if three_c else []))
    # Faces: pU = 0 (b = 1) and pN = 0 (b = 0); two components: pU = 0 (a = 1).
    starts = [x_em] + ([np.array([np.log(kappa), a, 1.0]), np.array([np.log(kappa), a, 0.0])]
                       if three_c else [np.array([np.log(kappa), 1.0])])
    bounds = [bounds_k, (0.0, 1.0)] + ([(0.0, 1.0)] if three_c else [])
    fun = lambda x: _neg_loglik_and_grad(x, arrays, three_c)
    best_x, best_f = x_em, fun(x_em)[0]
    best_f = best_f if np.isfinite(best_f) else np.inf
    for x0 in starts:
      res = scipy.optimize.minimize(fun, x0, jac=True, method=_POLISH_METHOD, bounds=bounds,
                                    options=_POLISH_OPTIONS)
      res.x = np.clip(res.x, [lo for lo, _ in bounds], [hi for _, hi in bounds])
      res.fun = fun(res.x)[0]
      if np.isfinite(res.fun) and res.fun < best_f:
        best_x, best_f = res.x, float(res.fun)
    kappa, p_t, p_n, p_u = _unpack(best_x, three_c)
    out['kappa'][c], out['p_t'][c], out['p_u'][c] = kappa, p_t, p_u
    out['p_n'][c] = p_n if three_c else 0.0
    out['loglik'][c] = -best_f
  return out


def num_parameters(three: bool, set_size):
  """Free parameters: kappa and pT (two-component), + pN where the display has non-targets."""
  set_size = np.asarray(set_size)
  return np.where(three & (set_size > 1), 3, 2)


@dataclasses.dataclass
class MixtureFits:
  """Fits of one model to every cell; arrays are (C,) numpy."""
  model: str
  cells: list
  kappa: np.ndarray
  p_t: np.ndarray
  p_n: np.ndarray
  p_u: np.ndarray
  loglik: np.ndarray
  n: np.ndarray

  def rows(self, min_trials: int = 0) -> list[dict]:
    """One dict a cell (`FIT_COLUMNS`); `warning` flags cells of fewer than `min_trials`."""
    sd = np.asarray(circular.kappa_to_sd(self.kappa), np.float64)
    k = num_parameters(self.model == 'three_component', [c[1] for c in self.cells])
    out = []
    for i, (subject, set_size, condition) in enumerate(self.cells):
      n = int(self.n[i])
      out.append(dict(subject=subject, set_size=int(set_size), condition=condition,
                      model=self.model, kappa=float(self.kappa[i]), sd=float(sd[i]),
                      p_t=float(self.p_t[i]), p_n=float(self.p_n[i]), p_u=float(self.p_u[i]),
                      loglik=float(self.loglik[i]), n=n,
                      aic=float(2 * k[i] - 2 * self.loglik[i]),
                      bic=float(k[i] * np.log(max(n, 1)) - 2 * self.loglik[i]),
                      warning='; '.join(w for w in (
                          small_cell_warning(n, min_trials),
                          self.bound_warning(i)) if w)))
    return out

  def bound_warning(self, i: int) -> str:
    """'' or the text naming cell i's parameters that sit on a bound (`bound_parameters`)."""
    on = bound_parameters(self.model, self.cells[i][1], self.kappa[i], self.p_t[i],
                          self.p_n[i], self.p_u[i])
    if not on:
      return ''
    text = 'on a bound: ' + ', '.join(on)
    if any(name.startswith('kappa') for name in on):
      text += (' (kappa at its clip: responses at the target with no spread, or angles far '
               'narrower than the data should be; were the units right?)')
    return text

  def bound_cells(self) -> list[tuple]:
    """(cell, bound_warning) of every cell with a parameter on a bound."""
    return [(c, self.bound_warning(i)) for i, c in enumerate(self.cells)
            if self.bound_warning(i)]

  def to_json(self) -> dict:
    """Everything as JSON types, floats exact (`from_json` reads it back equal)."""
    return dict(model=self.model, cells=[[str(c[0]), int(c[1]), str(c[2])] for c in self.cells],
                **{k: [float(x) for x in getattr(self, k)]
                   for k in ('kappa', 'p_t', 'p_n', 'p_u', 'loglik')},
                n=[int(x) for x in self.n])

  @classmethod
  def from_json(cls, obj: dict) -> 'MixtureFits':
    return cls(model=obj['model'], cells=[tuple(c) for c in obj['cells']],
               **{k: np.asarray(obj[k], np.float64)
                  for k in ('kappa', 'p_t', 'p_n', 'p_u', 'loglik')},
               n=np.asarray(obj['n'], np.int64))

  def params(self) -> dict:
    return dict(kappa=jnp.asarray(self.kappa), p_t=jnp.asarray(self.p_t),
                p_n=jnp.asarray(self.p_n), p_u=jnp.asarray(self.p_u))


def fit(table: data_lib.TrialTable, model: str = 'three_component',
        num_iterations: int | None = None) -> MixtureFits:
  """ML fit of `model` ('two_component' | 'three_component') to every cell of `table`."""
  if model not in MODELS:
    raise ValueError(f'mixture model must be one of {MODELS}, got {model!r}')
  cells, d = cell_data(table)
  three = model == 'three_component'
  out = polish(d, jax.device_get(fit_em(d, three=three, num_iterations=num_iterations)), three)
  return MixtureFits(model=model, cells=cells, kappa=np.asarray(out['kappa'], np.float64),
                     p_t=np.asarray(out['p_t'], np.float64),
                     p_n=np.asarray(out['p_n'], np.float64),
                     p_u=np.asarray(out['p_u'], np.float64),
                     loglik=np.asarray(out['loglik'], np.float64),
                     n=np.asarray(d.trial_mask.sum(-1)))


# A parameter within these of its bound is reported as on it: kappa within 0.1% of the clip,
# a weight within 1e-4 of 0 or 1.
_KAPPA_BOUND_RTOL, _WEIGHT_BOUND_ATOL = 1e-3, 1e-4


def bound_parameters(model: str, set_size: int, kappa, p_t, p_n, p_u) -> list[str]:
  """Names (with values) of a cell's fitted parameters that sit on a bound of the model.

  Bounds: kappa at `KAPPA_MIN` or `KAPPA_MAX` (the fit's clip), a free weight at 0 or 1. A
  weight the model fixes (pN of the two-component model or of a set size of 1) is not free.
  A maximum on a bound is a maximum, but its standard errors and AIC/BIC are not the usual
  ones, and a kappa at the clip means the data had no measurable spread.
  """
  out = []
  if kappa >= KAPPA_MAX * (1 - _KAPPA_BOUND_RTOL):
    out.append(f'kappa={kappa:.6g} (upper clip {KAPPA_MAX:g})')
  elif kappa <= KAPPA_MIN * (1 + _KAPPA_BOUND_RTOL):
    out.append(f'kappa={kappa:.6g} (lower clip {KAPPA_MIN:g})')
  weights = [('p_t', p_t), ('p_u', p_u)]
  if model == 'three_component' and set_size > 1:
    weights.append(('p_n', p_n))
  for name, w in weights:
    if w <= _WEIGHT_BOUND_ATOL:
      out.append(f'{name}={w:.3g} (at 0)')
    elif w >= 1 - _WEIGHT_BOUND_ATOL:
      out.append(f'{name}={w:.6g} (at 1)')
  return out


def small_cell_warning(n: int, min_trials: int) -> str:
  """'' or the warning text for a cell of n trials under a threshold of min_trials."""
  if n >= min_trials:
    return ''
  return f'only {n} trial{"s" if n != 1 else ""} (< {min_trials}): estimates unreliable'


def write_fits_csv(fits: list[MixtureFits], path: str, min_trials: int = 0) -> None:
  """Writes the tidy table `FIT_COLUMNS`, one row per model x cell (see `MixtureFits.rows`)."""
  epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
  files.write_csv(path, FIT_COLUMNS, [row for fit_ in fits for row in fit_.rows(min_trials)])


def trial_log_density(fits: MixtureFits, table: data_lib.TrialTable) -> np.ndarray:
  """(T,) log p(y) of each trial of `table` under the fitted parameters of its cell."""
  cells, d = cell_data(table)
  lookup = {c: i for i, c in enumerate(fits.cells)}
  missing = [c for c in cells if c not in lookup]
  if missing:
    raise ValueError(f'no fitted parameters for cell(s) {missing[:3]}')
  idx = jnp.asarray([lookup[c] for c in cells])
  params = {k: v[idx] for k, v in fits.params().items()}
  ll = np.asarray(trial_log_likelihood(params, d))
  out = np.zeros(len(table))
  ti = np.asarray(d.trial_index)
  out[ti[ti >= 0]] = ll[ti >= 0]
  return out


def cross_validate(table: data_lib.TrialTable, model: str, folds: np.ndarray,
                   num_iterations: int | None = None) -> np.ndarray:
  """Held-out log density of every trial by k-fold CV, (T,).

  Each fold's trials are scored under the ML parameters fitted (per cell) to the other folds:
  a plug-in predictive density. `folds` (T,) int assigns trials to folds.
  """
  cells, d = cell_data(table)
  three = model == 'three_component'
  ti = np.asarray(d.trial_index)
  slot_fold = np.where(ti >= 0, np.asarray(folds)[np.maximum(ti, 0)], -1)
  out = np.zeros(len(table))
  for k in np.unique(folds):
    train = d.with_trials(jnp.asarray(slot_fold != k))
    params = polish(train, jax.device_get(fit_em(train, three=three,
                                                 num_iterations=num_iterations)), three)
    params = {n: jnp.asarray(v, jnp.float32) for n, v in params.items() if n != 'loglik'}
    ll = np.asarray(trial_log_likelihood(params, d.with_trials(jnp.asarray(slot_fold == k))))
    sel = slot_fold == k
    out[ti[sel]] = ll[sel]
  return out


# --------------------------------------------------------------------------------------------
# Reference search (slow; for validation) and Bayesian versions.
# --------------------------------------------------------------------------------------------


def reference_fit(d: CellData, cell: int, three: bool, num_starts: int = 40, seed: int = 0):
  """The best log-likelihood a thorough multi-start scipy search finds for one cell.

  L-BFGS-B on (log kappa, softmax logits of the weights) from `num_starts` random starts plus
  the corners of the simplex. Used to check `fit_em`; not vectorised, not fast.
  """
  one = jax.tree_util.tree_map(lambda a: a[cell:cell + 1], d)
  has_nt = bool(np.asarray(one.nontarget_mask).any())
  n_w = 3 if (three and has_nt) else 2

  def unpack(x):
    w = jax.nn.softmax(jnp.concatenate([jnp.zeros(1), x[1:]]))
    p_n = w[2] if n_w == 3 else 0.0
    return dict(kappa=jnp.exp(x[:1]), p_t=w[:1], p_n=jnp.reshape(p_n, (1,)), p_u=w[1:2])

  neg = jax.jit(jax.value_and_grad(lambda x: -log_likelihood(unpack(x), one)[0]))
  rng = np.random.default_rng(seed)
  starts = [np.concatenate([[np.log(k)], np.full(n_w - 1, b)])
            for k in (1.0, 5.0, 20.0, 80.0) for b in (-4.0, -1.0, 1.0)]
  starts += [np.concatenate([rng.uniform(np.log(0.5), np.log(100.0), 1),
                             rng.normal(0, 2.5, n_w - 1)]) for _ in range(num_starts)]
  best = -np.inf
  for x0 in starts:
    res = scipy.optimize.minimize(lambda x: [np.float64(a) for a in neg(jnp.asarray(x))],
                                  x0, jac=True, method='L-BFGS-B',
                                  bounds=[(np.log(KAPPA_MIN), np.log(KAPPA_MAX))]
                                  + [(-25, 25)] * (n_w - 1))
    best = max(best, -float(res.fun))
  return best
