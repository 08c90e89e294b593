"""Simulated multi-subject experiments shaped like a large delayed-estimation data set.

`large_experiment(key)` draws the kind of data on which the BNS cross-validation once diverged
(13 subjects, set sizes 1 to 8, about 22,000 trials): every subject has its own precision,
guess rate and swap strength, swaps fall off with cue distance on an 8-location grid, and some
subject x set size cells have almost no swaps (a swap logit far below the target's), which
makes their swap parameters weakly identified. `scale` shrinks the number of trials per cell
so the same shape fits in a fast test.
"""

from __future__ import annotations

import jax
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour.behaviour import data as data_lib


def _rng(key) -> np.random.Generator:
  """A numpy generator seeded by a JAX key (numpy draws these thousands of small cells fast)."""
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def subject_parameters(key, num_subjects: int, num_rare_swappers: int = 3) -> list[dict]:
  """Per-subject generating parameters (deterministic in `key`).

  Returns a list of dicts: kappa (von Mises precision at set size 1; it falls as
  kappa / sqrt(N) with set size N), guess_logit (at set size 1; rises by 0.3 per extra item),
  swap_bias (the swap logit at zero cue distance), swap_width (w of f(d) = -d^2 / (2 w) + b).
  The last `num_rare_swappers` subjects swap almost never (bias -6).
  """
  rng = _rng(key)
  out = []
  for s in range(num_subjects):
    rare = s >= num_subjects - num_rare_swappers
    out.append(dict(kappa=float(rng.uniform(8.0, 25.0)),
                    guess_logit=float(rng.uniform(-4.0, -2.5)),
                    swap_bias=-6.0 if rare else float(rng.uniform(-1.5, 0.0)),
                    swap_width=float(rng.uniform(0.6, 1.5))))
  return out


def _grid_cues(rng, k: int, n: int) -> np.ndarray:
  """(k, n) distinct locations of the 8-location grid (pi/4 apart), random order."""
  order = np.argsort(rng.random((k, 8)), axis=1)[:, :n]
  return circular.wrap(order * (np.pi / 4))


def _spaced_reports(rng, k: int, n: int, separation: float) -> np.ndarray:
  """(k, n) uniform colours at least `separation` apart (sorted gaps trick, as in task.py)."""
  free = 2 * np.pi - n * separation
  u = np.sort(rng.uniform(0, free, (k, n)), axis=1) + np.arange(n) * separation
  u = u + rng.uniform(0, 2 * np.pi, (k, 1))
  return circular.wrap(np.take_along_axis(u, np.argsort(rng.random((k, n)), axis=1), axis=1))


def large_experiment(key, num_subjects: int = 13, set_sizes=tuple(range(1, 9)),
                     trials_per_cell: int = 212, scale: float = 1.0,
                     num_rare_swappers: int = 3) -> data_lib.TrialTable:
  """A simulated experiment: every subject x set size cell, 8-location cue grid.

  Swap logits f(d) = -d^2 / (2 w) + b of the cue distance d (the parametric model of
  METHOD sec. 3), per subject; target logit 0, guess logit per subject and set size.

  Args:
    key: PRNG key.
    num_subjects: subjects, labelled '1'..'S'.
    set_sizes: set sizes (each <= 8: the grid has 8 locations, pi/4 apart).
    trials_per_cell: trials of each subject x set size cell at scale 1 (13 x 8 x 212 =
      22,048 trials by default).
    scale: multiplies trials_per_cell (at least 2 trials a cell).
    num_rare_swappers: subjects that almost never swap (their cells have ~0 swaps).

  Returns:
    TrialTable (source 'simulated:large_experiment'), reports continuous with a minimum
    separation of pi/8, cued item uniform, trials ordered by set size then subject.
  """
  if max(set_sizes) > 8 or min(set_sizes) < 1:
    raise ValueError(f'set sizes must be in 1..8 (8 grid locations), got {list(set_sizes)}')
  per_cell = max(int(round(trials_per_cell * scale)), 2)
  key_params, key_cells = jax.random.split(key)
  params = subject_parameters(key_params, num_subjects, num_rare_swappers)
  per = lambda name: np.repeat([p[name] for p in params], per_cell)        # (S * per_cell,)
  subject = np.repeat([str(s + 1) for s in range(num_subjects)], per_cell).astype(object)
  k = num_subjects * per_cell
  tables = []
  for n in set_sizes:       # One batch per set size: every subject's trials at once.
    rng = _rng(jax.random.fold_in(key_cells, n))
    cue, report = _grid_cues(rng, k, n), _spaced_reports(rng, k, n, np.pi / 8)
    cued = rng.integers(0, n, k)
    d = np.abs(circular.wrap(cue - cue[np.arange(k), cued][:, None]))
    logits = -d**2 / (2.0 * per('swap_width')[:, None]) + per('swap_bias')[:, None]
    logits[np.arange(k), cued] = 0.0
    logits = np.concatenate([(per('guess_logit') + 0.3 * (n - 1))[:, None], logits], 1)
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    comp = (rng.random((k, 1)) > np.cumsum(w, 1)).sum(1)                   # 0: guess.
    centre = report[np.arange(k), np.maximum(comp - 1, 0)]
    y = np.where(comp == 0, rng.uniform(-np.pi, np.pi, k),
                 centre + rng.vonmises(0.0, per('kappa') / np.sqrt(n)))
    tables.append(data_lib.TrialTable(
        cue=cue, report=report, cued=cued.astype(np.int64), set_size=np.full(k, n, np.int64),
        response=circular.wrap(y), subject=subject,
        condition=np.full(k, '', object), source='simulated:large_experiment'))
  return data_lib.concatenate(tables)
