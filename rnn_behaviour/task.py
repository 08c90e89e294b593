"""The delayed-estimation task: displays, their population-coded inputs, and the trial's epochs.

A display holds N items; item j has a cue feature c_j (e.g. location) and a report feature r_j
(e.g. colour); one item k is cued. Arrays put the display axis first: `cue (K, N)`,
`report (K, N)`, `cued (K,)`. Trial inputs are constant within an epoch, so they are stored once
per epoch, `(num_epochs, K, input_size)`, and broadcast over time and over the samples of a
display by the network (the expensive input projection is never repeated per sample).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular

EPOCH_NAMES = ('stimulus', 'delay', 'cue', 'post_cue', 'response')
CUEINGS = ('probe', 'index')
CUE_INPUTS = ('channel', 'conjunctive')   # The cue's own input channel, or c_k (x) 1 in the
                                          # stimulus's conjunctive code (probe cueing only).


@flax.struct.dataclass
class Displays:
  """A batch of displays. cue, report: (K, N) radians in [-pi, pi); cued: (K,) int item index."""
  cue: jnp.ndarray
  report: jnp.ndarray
  cued: jnp.ndarray

  @property
  def num_displays(self) -> int:
    return self.cue.shape[0]

  @property
  def num_items(self) -> int:
    return self.cue.shape[1]

  def cued_report(self):
    """The target's report feature, (K,)."""
    return jnp.take_along_axis(self.report, self.cued[:, None], axis=1)[:, 0]

  def cued_cue(self):
    """The target's cue feature, (K,)."""
    return jnp.take_along_axis(self.cue, self.cued[:, None], axis=1)[:, 0]

  def __getitem__(self, index):
    return jax.tree_util.tree_map(lambda a: a[index], self)


@dataclasses.dataclass(frozen=True)
class Epochs:
  """Epoch lengths in time steps; `response` equals the number of diffusion steps."""
  stimulus: int = 5
  delay: int = 15
  cue: int = 5
  post_cue: int = 1
  response: int = 40

  @property
  def lengths(self) -> tuple[int, ...]:
    return tuple(getattr(self, name) for name in EPOCH_NAMES)

  @property
  def trial_length(self) -> int:
    """Steps before the response epoch."""
    return sum(self.lengths[:-1])

  @property
  def total(self) -> int:
    return sum(self.lengths)

  def epoch_of_step(self) -> np.ndarray:
    """(total,) int: the epoch index of every time step."""
    return np.repeat(np.arange(len(EPOCH_NAMES)), self.lengths)

  def start(self, name: str) -> int:
    return sum(self.lengths[:EPOCH_NAMES.index(name)])


def _spaced_on_circle(key, num_displays, num_items, grid, min_separation):
  """Uniformly random item features with pairwise circular separation >= min_separation.

  Exact, without rejection: N sorted uniform points on a circle shortened by N * d, each shifted
  by its rank times d, have Dirichlet-uniform gaps all >= d; a random rotation and a random item
  order finish the job. On a grid of G positions the same holds with integer gaps.
  """
  key_pos, key_rot, key_perm = jax.random.split(key, 3)
  if grid:
    step = circular.TWO_PI / grid
    gap = int(np.ceil(min_separation / step - 1e-9)) if min_separation > 0 else 1
    gap = max(gap, 1)
    free = grid - num_items * (gap - 1)
    if free < num_items:
      raise ValueError(f'cannot place {num_items} items {gap} grid steps apart on {grid} points')
    scores = jax.random.uniform(key_pos, (num_displays, free))
    chosen = jnp.sort(jnp.argsort(scores, axis=1)[:, :num_items], axis=1)
    slots = chosen + jnp.arange(num_items) * (gap - 1)
    slots = slots + jax.random.randint(key_rot, (num_displays, 1), 0, grid)
    angles = (slots % grid) * step
  else:
    free = circular.TWO_PI - num_items * min_separation
    if free <= 0:
      raise ValueError(f'cannot place {num_items} items {min_separation:.3f} rad apart')
    u = jnp.sort(jax.random.uniform(key_pos, (num_displays, num_items), maxval=free), axis=1)
    angles = u + jnp.arange(num_items) * min_separation
    angles = angles + jax.random.uniform(key_rot, (num_displays, 1), maxval=circular.TWO_PI)
  order = jax.vmap(lambda k: jax.random.permutation(k, num_items))(
      jax.random.split(key_perm, num_displays))
  return circular.wrap(jnp.take_along_axis(angles, order, axis=1))


# Jitted with its sizes static: called outside a jitted program (evaluation, analyses), one
# program instead of ~15 ops each compiling for every new number of displays.
@functools.partial(jax.jit, static_argnames=('num_displays', 'num_items', 'cue_grid',
                                             'report_grid', 'min_separation_cue',
                                             'min_separation_report'))
def sample_displays(key, num_displays: int, num_items: int, *, cue_grid: int = 0,
                    report_grid: int = 0, min_separation_cue: float = np.pi / 4,
                    min_separation_report: float = np.pi / 4) -> Displays:
  """Samples K displays of N items with a uniformly chosen cued item.

  Args:
    key: PRNG key.
    num_displays: K.
    num_items: N.
    cue_grid, report_grid: number of evenly spaced feature values, or 0 for a continuum.
    min_separation_cue, min_separation_report: minimum pairwise circular distance, radians.
  """
  key_cue, key_report, key_cued = jax.random.split(key, 3)
  cue = _spaced_on_circle(key_cue, num_displays, num_items, cue_grid, min_separation_cue)
  report = _spaced_on_circle(key_report, num_displays, num_items, report_grid,
                             min_separation_report)
  cued = jax.random.randint(key_cued, (num_displays,), 0, num_items)
  return Displays(cue=cue, report=report, cued=cued)


def displays_from_config(key, num_displays: int, task_config) -> Displays:
  """sample_displays with the settings of a config's `task` block."""
  return sample_displays(
      key, num_displays, task_config.num_items, cue_grid=task_config.cue_grid,
      report_grid=task_config.report_grid,
      min_separation_cue=task_config.min_separation_cue,
      min_separation_report=task_config.min_separation_report)


def input_sizes(num_items: int, num_tuning: int, cueing: str) -> tuple[int, int]:
  """(stimulus input size, cue input size)."""
  if cueing == 'probe':
    return num_tuning * num_tuning, num_tuning
  return num_items * num_tuning, num_items


def stimulus_code(displays: Displays, num_tuning: int, concentration: float):
  """Conjunctive code: sum over items of outer(code(cue_j), code(report_j)), (K, M*M)."""
  cue_code = circular.von_mises_code(displays.cue, num_tuning, concentration)
  report_code = circular.von_mises_code(displays.report, num_tuning, concentration)
  joint = jnp.einsum('knm,knl->kml', cue_code, report_code)
  return joint.reshape(displays.num_displays, num_tuning * num_tuning)


def indexed_report_code(displays: Displays, num_tuning: int, concentration: float):
  """Item j's report-feature code in input channel j, (K, N*M): what index cueing needs, since
  an item's index must be visible in the stimulus for a cue by index to select it (as the
  fixed upper and lower positions of Panichello & Buschman's task do)."""
  code = circular.von_mises_code(displays.report, num_tuning, concentration)
  return code.reshape(displays.num_displays, displays.num_items * num_tuning)


def cue_code(displays: Displays, num_tuning: int, concentration: float, cueing: str):
  """The cue input: the cued item's cue-feature code (probe) or its one-hot index (index)."""
  if cueing == 'probe':
    return circular.von_mises_code(displays.cued_cue(), num_tuning, concentration)
  if cueing == 'index':
    return jax.nn.one_hot(displays.cued, displays.num_items)
  raise ValueError(f"cueing must be one of {CUEINGS}, got {cueing!r}")


def conjunctive_cue_code(displays: Displays, num_tuning: int, concentration: float):
  """The probe cue in the stimulus's conjunctive layout: code(c_k) (x) 1, (K, M*M).

  Entry (m, l) is the cued item's cue-feature tuning curve m (every report curve l alike): the
  outer product of the cue code with a vector of ones, so a projection of the stimulus code reads
  it as "an item at c_k of every colour" (the authors' cue input).
  """
  code = circular.von_mises_code(displays.cued_cue(), num_tuning, concentration)
  joint = code[:, :, None] * jnp.ones((num_tuning,), code.dtype)
  return joint.reshape(displays.num_displays, num_tuning * num_tuning)


def epoch_inputs(displays: Displays, num_tuning: int = 16, concentration: float = 5.0,
                 cueing: str = 'probe', cue_input: str = 'channel') -> jnp.ndarray:
  """Inputs of each epoch, (num_epochs=5, K, stimulus_size + cue_size).

  Stimulus epoch: the conjunctive stimulus code (probe cueing) or the item-indexed report codes
  (index cueing); cue epoch: the cue code in its own channel (cue_input='channel'), or, with
  cue_input='conjunctive' (probe cueing), code(c_k) (x) 1 in the stimulus slots and the cue channel
  zero; other epochs: zero. The layout (and input size) is the same for both cue inputs.
  """
  if cue_input not in CUE_INPUTS:
    raise ValueError(f'cue_input must be one of {CUE_INPUTS}, got {cue_input!r}')
  if cueing == 'probe':
    stim = stimulus_code(displays, num_tuning, concentration)
  else:
    stim = indexed_report_code(displays, num_tuning, concentration)
  cue = cue_code(displays, num_tuning, concentration, cueing)
  zeros_stim, zeros_cue = jnp.zeros_like(stim), jnp.zeros_like(cue)
  if cue_input == 'conjunctive':
    if cueing != 'probe':
      raise ValueError("cue_input='conjunctive' needs probe cueing (a cue feature to code)")
    cue_row = (conjunctive_cue_code(displays, num_tuning, concentration), zeros_cue)
  else:
    cue_row = (zeros_stim, cue)
  per_epoch = {
      'stimulus': (stim, zeros_cue),
      'cue': cue_row,
  }
  rows = [jnp.concatenate(per_epoch.get(name, (zeros_stim, zeros_cue)), axis=-1)
          for name in EPOCH_NAMES]
  return jnp.stack(rows)


def epoch_inputs_from_config(displays: Displays, task_config) -> jnp.ndarray:
  return epoch_inputs(displays, task_config.num_tuning, task_config.tuning_concentration,
                      task_config.cueing, task_config.get('cue_input', 'channel'))


def epochs_from_config(config) -> Epochs:
  e = config.task.epochs
  return Epochs(stimulus=e.stimulus, delay=e.delay, cue=e.cue, post_cue=e.post_cue,
                response=config.diffusion.num_steps)


def cue_distances(displays: Displays) -> jnp.ndarray:
  """|wrap(c_j - c_k)| for every item j, (K, N); zero at the cued item."""
  return circular.circular_distance(displays.cue, displays.cued_cue()[:, None])


def nontarget_mask(displays: Displays) -> jnp.ndarray:
  """(K, N) bool, True at the non-target items."""
  return jnp.arange(displays.num_items)[None, :] != displays.cued[:, None]


def stack_displays(displays: Sequence[Displays]) -> Displays:
  return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *displays)


def nearest_item(responses, displays: Displays):
  """(K, S) index of the item whose report feature is nearest each response.

  `circular.nearest_item` with the cued item winning ties (a response equidistant from the
  target and a non-target is not a swap).
  """
  return circular.nearest_item(responses, displays.report[:, None, :],
                               preferred=displays.cued[:, None])
