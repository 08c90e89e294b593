"""All analyses of one recorded network in one call: numbers for JSON, figures for files.

The glue between recording (a network run on `displays_grid.design_grid`) and the entry points:
`analyse` takes arrays and an optional velocity function only, so it is independent of how the
network is built; `write_report` puts `analysis.json` and the figures in a folder;
`summary_row` gives the per-network numbers of the mechanisms comparison table.
"""

from __future__ import annotations

import json
import math
import os
from typing import Callable, Mapping

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import files
from rnn_behaviour import task as task_lib
from rnn_behaviour.analysis import decoding
from rnn_behaviour.analysis import displays_grid
from rnn_behaviour.analysis import dynamics
from rnn_behaviour.analysis import planes
from rnn_behaviour.analysis import plots

SUMMARY_COLUMNS = ('alignment_sigmoid_mse', 'alignment_flat_mse', 'swap_auc_precue',
                   'swap_auc_postcue')


def _tolist(value):
  """JSON-safe copy: arrays to lists, NaN and inf to None."""
  if isinstance(value, Mapping):
    return {k: _tolist(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_tolist(v) for v in value]
  if isinstance(value, (np.ndarray, jnp.ndarray)) or np.isscalar(value):
    array = np.asarray(value)
    if np.iscomplexobj(array):
      return _tolist({'real': array.real, 'imag': array.imag})
    if array.dtype.kind in 'biu':
      return array.tolist()
    if array.dtype.kind == 'f':
      return np.where(np.isfinite(array), array, None).tolist()
    return array.tolist()
  return value


def analyse(key, states, displays: task_lib.Displays, responses, epochs: task_lib.Epochs, *,
            num_bins: int = 8, velocity: Callable | None = None, num_bootstrap: int = 100,
            num_shuffles: int = 20, num_folds: int = 5, num_fixed_point_starts: int = 128,
            fixed_point_tolerance: float = 1e-6, fixed_point_steps: int = 2000,
            alignment_method: str = 'pca3') -> tuple[dict, dict]:
  """Plane alignment, swap decoding, cross-temporal decoding, PCA and fixed points.

  Args:
    key: PRNG key.
    states: (T, K, S, n) trajectories on two-item displays (ideally `design_grid`); T covers at
      least the steps before the response epoch.
    displays: the K displays.
    responses: (K, S) the network's responses on those trials (for the swap labels).
    epochs: epoch lengths, for the cue onset and the pre-response window.
    num_bins: report-feature bins for the planes.
    velocity: optional v(x) = F(x) - x of the noise-free delay dynamics (inputs at their delay
      value); without it the fixed-point analysis is skipped.
    num_bootstrap, num_shuffles, num_folds: as in the analyses they feed.
    num_fixed_point_starts: starts drawn from the delay-epoch states.
    fixed_point_tolerance, fixed_point_steps: as `dynamics.find_fixed_points`.
    alignment_method: as `planes.plane_cosine`.

  Returns:
    (numbers, figures): a JSON-safe dict and {name: Figure}.
  """
  states = jnp.asarray(states)
  key_align, key_swap, key_ct, key_fp = jax.random.split(key, 4)
  epoch_starts = {name: epochs.start(name) for name in task_lib.EPOCH_NAMES
                  if epochs.start(name) < states.shape[0]}
  pre = states[:epochs.trial_length]
  numbers, figures = {}, {}
  numbers['alignment'], figures['alignment'] = _plane_alignment(
      key_align, states, displays, epochs, epoch_starts, num_bins, num_bootstrap,
      alignment_method)
  numbers['swap_decoding'], figures['swap_auc'] = _swap_decoding(
      key_swap, pre, displays, responses, epochs, epoch_starts, num_folds, num_shuffles)
  # Cross-temporal decoding of the cued item's report feature.
  cross = decoding.cross_temporal_decoding(key_ct, pre, displays.cued_report(),
                                           num_folds=num_folds)
  numbers['cross_temporal'] = dict(error=cross.error, similarity=cross.similarity)
  figures['cross_temporal'] = plots.plot_cross_temporal(cross.error, epoch_starts, vmin=0.0,
                                                        vmax=np.pi / 2)
  fitted, numbers['pca'], figures['pca'] = _pca(pre, displays, epoch_starts, num_bins)
  if velocity is not None:
    numbers['fixed_points'], figures['fixed_points'] = _fixed_points(
        key_fp, states, epochs, velocity, fitted, num_fixed_point_starts,
        fixed_point_tolerance, fixed_point_steps)
  numbers['summary'] = summary_row(numbers)
  return _tolist(numbers), figures


def _plane_alignment(key, states, displays, epochs, epoch_starts, num_bins: int,
                     num_bootstrap: int, method: str):
  """Plane alignment of the cued item's plane (item 1 cued vs item 2 cued), P&B 2021:
  (numbers, figure)."""
  cue_onset = epochs.start('cue')
  bins = displays_grid.item_bins(displays, num_bins)
  boot = planes.bootstrap_alignment(key, states, bins, num_bins,
                                    masks=displays_grid.cued_masks(displays),
                                    method=method, num_bootstrap=num_bootstrap)
  fit = planes.fit_around_cue(np.asarray(boot.cosine), cue_onset, before=epochs.delay,
                              after=epochs.cue + epochs.post_cue)
  return (dict(method=method, cosine=boot.cosine, band=boot.band, fit=fit),
          plots.plot_alignment(boot.cosine, boot.band, fit, cue_onset, epoch_starts))


def _swap_decoding(key, pre, displays, responses, epochs, epoch_starts, num_folds: int,
                   num_shuffles: int):
  """Setting up for failure: the coming swap decoded from the pre-response states `pre`:
  (numbers, figure)."""
  cue_onset, before_response = epochs.start('cue'), epochs.trial_length
  labels = decoding.swap_labels(jnp.asarray(responses), displays)
  num_swaps = int(labels.sum())
  if 0 < num_swaps < labels.size:
    swap = decoding.swap_auc_over_time(key, pre, labels, num_folds=num_folds,
                                       num_shuffles=num_shuffles)
    auc, band = np.asarray(swap.auc), np.asarray(swap.band)
  else:  # No swaps (or only swaps): nothing to decode.
    auc = np.full(pre.shape[0], np.nan)
    band = np.full((2, pre.shape[0]), np.nan)
  numbers = dict(auc=auc, chance_band=band, num_swaps=num_swaps,
                 swap_rate=num_swaps / labels.size, auc_precue=float(auc[cue_onset - 1]),
                 auc_postcue=float(auc[before_response - 1]))
  return numbers, plots.plot_swap_auc(auc, band, epoch_starts)


def _pca(pre, displays, epoch_starts, num_bins: int):
  """PCA of the display-mean activity: (the fit, numbers, figure)."""
  mean_states = pre.mean(axis=2)
  fitted = dynamics.pca(mean_states)
  numbers = dict(explained=fitted.explained,
                 dimensions_for_90=int(np.searchsorted(
                     np.cumsum(np.asarray(fitted.explained)), 0.9) + 1))
  # One trajectory per bin of the cued item's report feature keeps the picture readable.
  cued_bins = displays_grid.angle_bins(displays.cued_report(), num_bins)
  by_bin = planes.bin_means(dynamics.project(mean_states, fitted)[..., :3], cued_bins, num_bins)
  return fitted, numbers, plots.plot_pca(fitted.explained, by_bin,
                                         displays_grid.bin_centres(num_bins), epoch_starts)


def _fixed_points(key, states, epochs, velocity, fitted, num_starts: int, tolerance: float,
                  num_steps: int):
  """Fixed and slow points of the delay dynamics, started from visited delay states:
  (numbers, figure)."""
  delay = states[epochs.start('delay'):epochs.start('cue')]
  starts = dynamics.sample_initial_states(key, delay, num_starts, noise_scale=0.0)
  found = dynamics.find_fixed_points(velocity, starts, tolerance=tolerance, num_steps=num_steps)
  magnitude = np.abs(found.eigenvalues)
  numbers = dict(
      num_points=int(found.points.shape[0]), q=found.q,
      max_abs_eigenvalue=magnitude.max(axis=1) if magnitude.size else [],
      num_stable=int(np.sum(magnitude.max(axis=1) < 1.0)) if magnitude.size else 0,
      eigenvalues=found.eigenvalues,
      points_pcs=dynamics.project(found.points, fitted)[:, :3] if found.points.size else [])
  return numbers, plots.plot_eigenvalues(found.eigenvalues, True, found.q)


def summary_row(numbers: Mapping) -> dict:
  """The mechanisms-table columns of one network's `analyse` numbers."""
  fit = numbers['alignment']['fit']
  swap = numbers['swap_decoding']

  def clean(x):
    return None if x is None or not math.isfinite(x) else float(x)

  return dict(alignment_sigmoid_mse=clean(fit['sigmoid_mse']),
              alignment_flat_mse=clean(fit['flat_mse']),
              swap_auc_precue=clean(swap['auc_precue']),
              swap_auc_postcue=clean(swap['auc_postcue']))


def write_report(folder: str, numbers: Mapping, figures: Mapping, fmt: str = 'png',
                 dpi: int = 120) -> list:
  """Writes `analysis.json` and one `<name>.<fmt>` per figure into folder; returns the paths."""
  epath.Path(folder).mkdir(parents=True, exist_ok=True)
  path = os.fspath(epath.Path(folder) / 'analysis.json')
  epath.Path(path).write_text(json.dumps(_tolist(numbers), indent=1))
  paths = [path]
  for name, fig in figures.items():
    paths.append(files.save_figure(fig, os.fspath(epath.Path(folder) / f'{name}.{fmt}'), dpi))
  return paths
