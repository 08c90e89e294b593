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
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import task as task_lib
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import responses


def subject_parameters(key, num_subjects: int, num_rare_swappers: int = 3) -> list[dict]:
  """Per-subject generating parameters (deterministic in `key`).

  Returns a list of dicts: kappa (von Mises precision at set size 1; it falls as
  kappa / sqrt(N) with set size N), guess_logit (at set size 1; rises by 0.3 per extra item),
  swap_bias (the swap logit at zero cue distance), swap_width (w of f(d) = -d^2 / (2 w) + b).
  The last `num_rare_swappers` subjects swap almost never (bias -6).
  """
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
  out = []
  for s in range(num_subjects):
    rare = s >= num_subjects - num_rare_swappers
    out.append(dict(kappa=float(rng.uniform(8.0, 25.0)),
                    guess_logit=float(rng.uniform(-4.0, -2.5)),
                    swap_bias=-6.0 if rare else float(rng.uniform(-1.5, 0.0)),
                    swap_width=float(rng.uniform(0.6, 1.5))))
  return out


def large_experiment(key, num_subjects: int = 13, set_sizes=tuple(range(1, 9)),
                     trials_per_cell: int = 212, scale: float = 1.0,
                     num_rare_swappers: int = 3) -> data_lib.TrialTable:
  """A simulated experiment: every subject x set size cell, 8-location cue grid.

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
    separation of pi/8, cued item uniform.
  """
  if max(set_sizes) > 8 or min(set_sizes) < 1:
    raise ValueError(f'set sizes must be in 1..8 (8 grid locations), got {list(set_sizes)}')
  per_cell = max(int(round(trials_per_cell * scale)), 2)
  key_params, key_cells = jax.random.split(key)
  params = subject_parameters(key_params, num_subjects, num_rare_swappers)
  per = lambda name: np.repeat([p[name] for p in params], per_cell)        # (S * per_cell,)
  subject = np.repeat([str(s + 1) for s in range(num_subjects)], per_cell).astype(object)
  tables = []
  for n in set_sizes:       # One batch per set size: every subject's displays at once.
    k_disp, k_resp = jax.random.split(jax.random.fold_in(key_cells, n))
    displays = task_lib.sample_displays(k_disp, num_subjects * per_cell, n, cue_grid=8,
                                        min_separation_cue=np.pi / 4,
                                        min_separation_report=np.pi / 8)
    d = task_lib.cue_distances(displays)
    logits = -d**2 / (2.0 * per('swap_width')[:, None]) + per('swap_bias')[:, None]
    logits = jnp.where(task_lib.nontarget_mask(displays), logits, 0.0)
    weights = responses.weights_from_logits(per('guess_logit') + 0.3 * (n - 1), logits)
    y = responses.sample_mixture(k_resp, weights, displays.report,
                                 per('kappa') / np.sqrt(n), 1)[:, 0]
    t = data_lib.from_displays(displays, y)
    tables.append(data_lib.TrialTable(cue=t.cue, report=t.report, cued=t.cued,
                                      set_size=t.set_size, response=t.response,
                                      subject=subject, condition=t.condition,
                                      source='simulated:large_experiment'))
  return data_lib.concatenate(tables)
