"""The paper's mechanism analyses (METHOD sec. 8), measured the way its authors measured them.

Plane alignment (Panichello & Buschman 2021, as Radmard, Bays & Lengyel compute it). One *cue
pair* (the two items' cue features, fixed) at a time, many trials of it: every pair of report
features on a grid, each item cued, the network's own noise on (and its own initial state:
whatever `rnn.Network.sample` draws). At every analysed time step:

  1. project the states onto the null space of the readout D (the readout plane carries the
     response itself, not the memory);
  2. reduce them to 3 dimensions by PCA over *all* of the pair's trials, swaps included
     (centred across trials);
  3. keep the trials that end *correct* (response nearest the cued item), split them by which
     item was cued, and bin each half by the *reported* colour (16 equal bins on the circle,
     [-pi + b w, -pi + (b + 1) w));
  4. fit a plane to each half's 16 bin means: the normal is the third principal axis of the
     bin means about their centroid;
  5. the alignment is |cos| of the angle between the two planes' normals: 0 orthogonal, 1
     aligned.

Two variants (`config.analysis.paper_variant`), differing in three places:

  'authors' (the default), as the authors' notebook `analysis/new_analysis/plane_alignment.ipynb`
    runs it: in step 1 the states are projected with the (n, n) projector B B^T, staying in unit
    coordinates, and each trial's mean over the n units is then subtracted; in step 4 an empty
    colour bin stays in the fit as a zero row (the PCA origin, i.e. the mean of all the pair's
    trials); time runs over the delay, cue and response epochs, the post-cue step skipped.
    Displays: cue pairs on a 24-point grid (the task's own cue grid when it has one), every
    separation from min_separation_cue up to the last below 180 degrees (3-11 grid steps for
    45 degrees on 24 points) at every rotation of the grid; report values on the same grid; 32
    samples a display. Index cueing: one 180-degree pair, 64 samples a display.
  'ours' (the protocol before issue 20): coordinates x B (n - 2) with no per-trial mean
    subtraction (a PCA centres across trials, which is what it needs); empty bins left out of
    the plane fit (NaN with fewer than three filled); time over the delay, cue, post-cue and
    response epochs; cue pairs at distances min_separation_cue + k pair_distance_step below pi
    (on a cue grid: its multiples up to pi) at 4 rotations; 12 report values.

The prediction: the nearer the two cue features, the more aligned the colour planes already are
before the cue; measured as the slope and the rank correlation of the pair's alignment at the
last pre-cue step against its cue distance, with bootstrap intervals over pairs.

Where a swap is decided: separability of swap and correct trials of the same display at every
analysed step, response epoch included, in the readout's null space (the readout itself shows
the answer once it is given), by the within-display-centred decoder of
`decoding.swap_auc_over_time`; and the trials' projection on the most discriminating null-space
direction.

Shapes: trajectories are time-major (T, K, S, n): time, displays, samples, units.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from rnn_behaviour import circular
from rnn_behaviour import task as task_lib
from rnn_behaviour.analysis import displays_grid
from rnn_behaviour.configs import choices

NUM_COMPONENTS = 3
VARIANTS = choices.PAPER_VARIANTS
# The epochs whose steps enter the time courses, in trial order.
ANALYSED_EPOCHS = {'authors': ('delay', 'cue', 'response'),
                   'ours': ('delay', 'cue', 'post_cue', 'response')}
# Settings a config leaves at 0 ("the variant's own").
_OURS_ROTATIONS, _OURS_REPORT_VALUES, _AUTHORS_INDEX_SAMPLES = 4, 12, 64


class Recipe(NamedTuple):
  """How a variant computes one pair's alignment (see the module docstring)."""
  subtract_unit_mean: bool     # Project with B B^T and subtract each trial's mean over units.
  keep_empty_bins: bool        # Empty colour bins enter the plane fit as zero rows.
  skip_post_cue: bool          # The post-cue epoch is not part of the time course.


RECIPES = {'authors': Recipe(True, True, True), 'ours': Recipe(False, False, False)}


def recipe(variant: str) -> Recipe:
  if variant not in RECIPES:
    raise ValueError(f'unknown plane-alignment variant {variant!r}; one of {VARIANTS}')
  return RECIPES[variant]


# ------------------------------------------------------------------------------- displays


def pair_distances(min_separation: float, step: float, cue_grid: int = 0) -> np.ndarray:
  """Cue distances of the 'ours' variant's pairs, radians in [min_separation, pi].

  On a grid of G cue values: every multiple of 2 pi / G from min_separation up to pi. On a
  continuum: min_separation, min_separation + step, ... below pi (45 to 165 degrees in steps
  of 15 for min_separation pi/4 and step pi/12).
  """
  if cue_grid:
    unit = circular.TWO_PI / cue_grid
    first = max(int(np.ceil(min_separation / unit - 1e-9)), 1)
    return np.arange(first, cue_grid // 2 + 1) * unit
  return np.arange(min_separation, np.pi - 1e-6, step)


def cue_pairs(distances, num_rotations: int) -> tuple[np.ndarray, np.ndarray]:
  """(P, 2) cue features and (P,) distances: every distance at `num_rotations` evenly spaced
  positions of the first item (the second item at first + distance)."""
  first = np.arange(num_rotations) * (circular.TWO_PI / num_rotations)
  pairs = [(a, a + d) for d in distances for a in first]
  dist = np.repeat(np.asarray(distances, float), num_rotations)
  return np.asarray(circular.wrap(np.asarray(pairs))), dist


def grid_cue_pairs(grid: int, min_separation: float,
                   num_rotations: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The 'authors' cue pairs: every separation of `circular.grid_separations` at each rotation.

  Args:
    grid: G, points of the cue grid (values 2 pi g / G, wrapped).
    min_separation: radians.
    num_rotations: positions of the first item: 0 for all G, else R evenly spaced grid points
      (rounded to the grid; R <= G).

  Returns:
    cues (P, 2) radians, distances (P,) radians, steps (P, 2) int grid indices of the two
    cues; P = separations x rotations, separation-major (the notebook's loop order).
  """
  if num_rotations > grid:
    raise ValueError(f'{num_rotations} rotations do not fit a {grid}-point grid')
  rotations = (np.arange(grid) if not num_rotations
               else np.round(np.arange(num_rotations) * grid / num_rotations).astype(int))
  separations = circular.grid_separations(grid, min_separation)
  first = np.tile(rotations, separations.size)
  second = (first + np.repeat(separations, rotations.size)) % grid
  indices = np.stack([first, second], axis=-1)
  unit = circular.TWO_PI / grid
  cues = np.asarray(circular.wrap(indices * unit))
  distances = np.repeat(separations, rotations.size) * unit
  return cues, distances, indices


def pair_displays(cue_features, num_report_values: int,
                  min_separation_report: float) -> task_lib.Displays:
  """Every ordered pair of report values on a grid of R (at least min_separation_report apart),
  each item cued, with the two cue features fixed: 2 x (number of report pairs) displays, item 0
  cued in the first half."""
  values = circular.wrap(np.arange(num_report_values) * (circular.TWO_PI / num_report_values))
  a, b = np.meshgrid(values, values, indexing='ij')
  apart = np.abs(circular.wrap(a - b)) >= min_separation_report - 1e-6
  report = np.stack([a[apart], b[apart]], axis=-1)
  report = np.concatenate([report, report])
  cued = np.repeat(np.arange(2), report.shape[0] // 2)
  cue = np.broadcast_to(np.asarray(cue_features, float), report.shape)
  return task_lib.Displays(cue=jnp.asarray(cue, jnp.float32),
                           report=jnp.asarray(report, jnp.float32),
                           cued=jnp.asarray(cued, jnp.int32))


class Settings(NamedTuple):
  """What `run_paper` records and how it measures, resolved from a config."""
  variant: str
  recipe: Recipe
  cues: np.ndarray               # (P, 2) cue features of the analysed pairs, radians.
  distances: np.ndarray          # (P,) their cue distances, radians.
  report_values: int             # Report grid per pair.
  samples_per_display: int


def settings_from_config(analysis_config, task_config) -> Settings:
  """The analysed pairs, report grid and samples of `config.analysis.paper_variant`.

  A field left at 0 takes the variant's own value: pair_rotations (authors: every grid
  position; ours: 4), report_values (authors: the task's report grid, else pair_grid; ours:
  12), index_samples_per_display (authors: 64; ours: samples_per_display). Index cueing does
  not show the cue features to the network, so one 180-degree pair stands for all.
  """
  c = analysis_config
  variant = c.get('paper_variant', 'authors')
  steps = recipe(variant)
  rotations = int(c.get('pair_rotations', 0))
  index_samples = int(c.get('index_samples_per_display', 0))
  grid = int(task_config.cue_grid or c.get('pair_grid', 24))
  if variant == 'authors':
    report_values = int(c.get('report_values', 0) or task_config.report_grid
                        or c.get('pair_grid', 24))
    index_samples = index_samples or _AUTHORS_INDEX_SAMPLES
  else:
    report_values = int(c.get('report_values', 0) or _OURS_REPORT_VALUES)
    index_samples = index_samples or int(c.samples_per_display)
  if task_config.cueing == 'index':
    cues, distances = np.array([[0.0, -np.pi]]), np.array([np.pi])
  elif variant == 'authors':
    cues, distances, _ = grid_cue_pairs(grid, task_config.min_separation_cue, rotations)
  else:
    distances = pair_distances(task_config.min_separation_cue, c.pair_distance_step,
                               task_config.cue_grid)
    cues, distances = cue_pairs(distances, rotations or _OURS_ROTATIONS)
  if not len(cues):
    raise ValueError(f'no cue pair of the {variant!r} plane-alignment variant is at least '
                     f'task.min_separation_cue={task_config.min_separation_cue:.3f} apart')
  samples = index_samples if task_config.cueing == 'index' else int(c.samples_per_display)
  return Settings(variant=variant, recipe=steps, cues=cues, distances=distances,
                  report_values=report_values, samples_per_display=samples)


# ------------------------------------------------------------------------------- time steps


def analysed_steps(epochs: task_lib.Epochs, skip_post_cue: bool) -> tuple[np.ndarray, dict]:
  """The steps of a recorded trajectory that enter the time courses.

  Args:
    epochs: the trial's epochs; a recorded trajectory has epochs.total steps.
    skip_post_cue: leave out the post-cue epoch (the 'authors' variant).

  Returns:
    steps (A,) int indices into the trajectory's time axis, in order, and spans {epoch: (start,
    stop)} of each analysed epoch in the analysed (compressed) time axis.
  """
  names = ANALYSED_EPOCHS['authors' if skip_post_cue else 'ours']
  steps, spans = [], {}
  for name in names:
    length = epochs.lengths[task_lib.EPOCH_NAMES.index(name)]
    spans[name] = (len(steps), len(steps) + length)
    steps.extend(range(epochs.start(name), epochs.start(name) + length))
  return np.asarray(steps, int), spans


# ------------------------------------------------------------------------- plane alignment


def null_space_basis(readout):
  """(n, n - 2) orthonormal basis of the null space of the (2, n) readout."""
  _, _, vt = jnp.linalg.svd(jnp.asarray(readout), full_matrices=True)
  return vt[readout.shape[0]:].T


def null_space_states(x, readout, subtract_unit_mean: bool):
  """States (..., n) in the readout's null space.

  subtract_unit_mean=False: coordinates x B (..., n - 2) in an orthonormal basis B.
  True (the authors'): x B B^T (..., n), still in unit coordinates, minus each state's mean
  over its n units.
  """
  basis = null_space_basis(readout)
  if not subtract_unit_mean:
    return x @ basis
  projected = x @ (basis @ basis.T)
  return projected - projected.mean(axis=-1, keepdims=True)


def top_components(x, num_components: int = NUM_COMPONENTS):
  """x (M, d) centred across rows and projected on its top principal axes: (M, c)."""
  centred = x - x.mean(axis=0)
  _, vectors = jnp.linalg.eigh(centred.T @ centred)
  return centred @ vectors[:, ::-1][:, :num_components]


def weighted_bin_means(points, bins, weights, num_bins: int):
  """(B, c) means of points (M, c) per bin (M,) over trials with weight (M,); (B,) counts.
  An empty bin's mean is a zero row."""
  onehot = jax.nn.one_hot(bins, num_bins, dtype=points.dtype) * weights[:, None]
  counts = onehot.sum(axis=0)
  return onehot.T @ points / jnp.maximum(counts, 1e-30)[:, None], counts


def plane_normal(points, present):
  """Unit normal of the plane best fitting the rows of points (B, 3) where present (B,) holds:
  the direction of least variance about their centroid. NaN with fewer than 3 points."""
  weight = present.astype(points.dtype)
  centre = weight @ points / jnp.maximum(weight.sum(), 1.0)
  centred = (points - centre) * weight[:, None]
  normal = jnp.linalg.svd(centred, full_matrices=True)[2][-1]
  return jnp.where(weight.sum() >= 3, normal, jnp.nan)


def plane_normal_with_zero_rows(points, present):
  """The authors' plane fit: unit normal of the plane best fitting all B rows of points (B, 3),
  the rows of empty bins (present False) as zeros: the third principal axis of the rows about
  their centroid. NaN when fewer than 3 distinct points enter (the zero rows count as one)."""
  rows = jnp.where(present[:, None], points, 0.0)
  centred = rows - rows.mean(axis=0)
  normal = jnp.linalg.svd(centred, full_matrices=True)[2][-1]
  distinct = present.sum() + jnp.any(~present)
  return jnp.where(distinct >= 3, normal, jnp.nan)


def _alignment_at(x, cued, reported_bins, correct, num_bins, keep_empty_bins):
  """|cos| between the cued-item planes of one time step's null-space states x (M, d)."""
  z = top_components(x)
  fit = plane_normal_with_zero_rows if keep_empty_bins else plane_normal
  normals = []
  for item in (0, 1):
    weights = (correct & (cued == item)).astype(z.dtype)
    means, counts = weighted_bin_means(z, reported_bins, weights, num_bins)
    normals.append(fit(means, counts > 0))
  return jnp.abs(normals[0] @ normals[1])


@functools.partial(jax.jit, static_argnames=('num_bins', 'subtract_unit_mean',
                                             'keep_empty_bins'))
def pair_alignment(states, readout, cued, reported, correct, num_bins: int = 16,
                   subtract_unit_mean: bool = True, keep_empty_bins: bool = True):
  """The paper's plane alignment of one cue pair at every given time step.

  Args:
    states: (T, K, S, n) trajectories of the pair's displays (or (T, M, n) trials), already
      restricted to the analysed steps (`analysed_steps`).
    readout: (2, n) readout D; states are projected on its null space first.
    cued: (K,) (or (M,)) index of the cued item, 0 or 1.
    reported: (K, S) (or (M,)) response angles, radians.
    correct: (K, S) (or (M,)) bool, the response nearest the cued item. Only these trials
      enter the planes; the PCA is fitted on all trials.
    num_bins: reported-colour bins.
    subtract_unit_mean, keep_empty_bins: the variant's `Recipe` (defaults: the authors').

  Returns:
    (T,) |cos| between the planes of the item-0-cued and item-1-cued correct trials.
  """
  num_steps, units = states.shape[0], states.shape[-1]
  if states.ndim == 4:
    cued = jnp.broadcast_to(cued[:, None], states.shape[1:3])
  cued, correct = jnp.reshape(cued, -1), jnp.reshape(correct, -1)
  bins = displays_grid.angle_bins(jnp.reshape(reported, -1), num_bins)

  def one_step(xt):
    x = null_space_states(xt, readout, subtract_unit_mean)
    return _alignment_at(x, cued, bins, correct, num_bins, keep_empty_bins)

  # One step at a time: a pair's recorded states are large, their per-step copies need not be.
  return jax.lax.map(one_step, states.reshape(num_steps, -1, units))


class PairAverage(NamedTuple):
  """mean (T,) over pairs; band (2, T): bootstrap percentiles over pairs; num_pairs (T,)."""
  mean: np.ndarray
  band: np.ndarray
  num_pairs: np.ndarray


def average_over_pairs(per_pair, seed: int = 0, num_bootstrap: int = 1000,
                       level: float = 0.95) -> PairAverage:
  """Mean over cue pairs (rows of (P, T); NaNs ignored) with a bootstrap band over pairs."""
  per_pair = np.asarray(per_pair, float)
  rng = np.random.default_rng(seed)
  with np.errstate(all='ignore'):
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', RuntimeWarning)
      mean = np.nanmean(per_pair, axis=0)
      draws = rng.integers(0, per_pair.shape[0], (num_bootstrap, per_pair.shape[0]))
      replicates = np.nanmean(per_pair[draws], axis=1)
      tail = 50.0 * (1.0 - level)
      band = np.nanpercentile(replicates, [tail, 100.0 - tail], axis=0)
  return PairAverage(mean=mean, band=band, num_pairs=np.isfinite(per_pair).sum(axis=0))


# ----------------------------------------------------------------------------- prediction


def precue_prediction(alignment, distance, seed: int = 0, num_bootstrap: int = 1000,
                      level: float = 0.95) -> dict:
  """The paper's prediction, as numbers: pre-cue alignment against cue distance over pairs.

  Args:
    alignment: (P,) each pair's alignment at the last pre-cue step.
    distance: (P,) the pair's cue distance, radians.

  Returns:
    dict with slope (|cos| per radian, least squares), spearman (rank correlation), their
    bootstrap intervals over pairs (slope_interval, spearman_interval), the mean alignment per
    distance (distances, means) and num_pairs. The prediction holds when the slope is
    negative with an interval below zero.
  """
  alignment, distance = np.asarray(alignment, float), np.asarray(distance, float)
  keep = np.isfinite(alignment)
  alignment, distance = alignment[keep], distance[keep]
  levels = np.unique(distance)
  result = dict(num_pairs=int(alignment.size), distances=levels.tolist(),
                means=[float(alignment[distance == d].mean()) for d in levels])
  if alignment.size < 3 or levels.size < 2:
    return dict(result, slope=float('nan'), spearman=float('nan'),
                slope_interval=[float('nan')] * 2, spearman_interval=[float('nan')] * 2)

  def statistics(a, d):
    if np.unique(d).size < 2:
      return np.nan, np.nan
    rho = stats.spearmanr(d, a).statistic if np.ptp(a) > 0 else np.nan
    return np.polyfit(d, a, 1)[0], rho

  slope, rho = statistics(alignment, distance)
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, alignment.size, (num_bootstrap, alignment.size))
  boot = np.array([statistics(alignment[i], distance[i]) for i in draws])
  tail = 50.0 * (1.0 - level)
  intervals = np.nanpercentile(boot, [tail, 100.0 - tail], axis=0)
  return dict(result, slope=float(slope), spearman=float(rho),
              slope_interval=intervals[:, 0].tolist(), spearman_interval=intervals[:, 1].tolist())


# ------------------------------------------------------------------------ swap decision


def project_null(states, readout):
  """(T, K, S, n) -> (T, K, S, n - 2): coordinates in the readout's null space."""
  return jnp.asarray(states) @ null_space_basis(readout)


def discriminating_direction(states, swap):
  """Unit direction separating swap from correct trials at one step, within displays.

  Args:
    states: (K, S, d) states of one time step.
    swap: (K, S) bool labels.

  Returns:
    (d,) the normalised difference of the class means of the display-centred states, each
    display weighted by how balanced its labels are (a display without both kinds carries no
    information about the difference).
  """
  centred = states - states.mean(axis=1, keepdims=True)
  swap = jnp.asarray(swap, states.dtype)
  num_swap, num_correct = swap.sum(1), (1.0 - swap).sum(1)
  mean_swap = jnp.einsum('ks,ksd->kd', swap, centred) / jnp.maximum(num_swap, 1)[:, None]
  mean_correct = jnp.einsum('ks,ksd->kd', 1.0 - swap, centred) / jnp.maximum(num_correct,
                                                                              1)[:, None]
  weight = num_swap * num_correct / jnp.maximum(num_swap + num_correct, 1)
  difference = weight @ (mean_swap - mean_correct)
  return difference / jnp.maximum(jnp.linalg.norm(difference), 1e-30)


def projections(states, direction):
  """(T, K, S) display-centred projections of (T, K, S, d) states on a (d,) direction."""
  centred = states - states.mean(axis=2, keepdims=True)
  return centred @ direction


def decided_from(auc, upper) -> int | None:
  """First step from which the AUC stays above its chance band to the end (None: never)."""
  above = np.asarray(auc, float) > np.asarray(upper, float)
  if not above.size or not above[-1]:
    return None
  below = np.flatnonzero(~above)
  return int(below[-1] + 1) if below.size else 0
