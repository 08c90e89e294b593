"""Figures of the network analyses, drawn with matplotlib's object API.

Figures are built as `matplotlib.figure.Figure` objects without pyplot, so no GUI backend or
global figure registry is involved (safe in headless jobs and loops; the Agg canvas renders on
`files.save_figure`). Every function takes numpy-convertible arrays and returns the Figure.
`epoch_starts` arguments are dicts {epoch name: first step}, e.g.
`{name: epochs.start(name) for name in task.EPOCH_NAMES}`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib import cm
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from rnn_behaviour.analysis import planes


def _figure(width=5.0, height=3.5, ncols=1) -> tuple[Figure, list]:
  fig = Figure(figsize=(width * ncols, height), layout='constrained')
  axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
  return fig, axes


def mark_epochs(ax, epoch_starts: Mapping[str, int] | None, highlight: str = 'cue'):
  """Dotted lines at epoch starts, labelled on top; the `highlight` epoch's start solid."""
  if not epoch_starts:
    return
  for name, start in epoch_starts.items():
    solid = name == highlight
    ax.axvline(start - 0.5, color='k' if solid else '0.6', lw=1.0 if solid else 0.7,
               ls='-' if solid else ':')
    ax.text(start - 0.5, 1.0, f' {name}', transform=ax.get_xaxis_transform(), fontsize=7,
            va='bottom', ha='left', rotation=30, color='0.3')


def plot_alignment(cosine, band=None, fit: Mapping | None = None, cue_onset: int | None = None,
                   epoch_starts: Mapping[str, int] | None = None,
                   title: str = 'Plane alignment') -> Figure:
  """The planes' cosine over time with its bootstrap band and the sigmoid and flat fits.

  Args:
    cosine: (T,) alignment time course.
    band: optional (2, T) lower and upper band.
    fit: optional result of `planes.fit_around_cue` (times relative to `cue_onset`).
    cue_onset: first cue step; drawn as a solid line.
    epoch_starts: optional epoch boundaries to mark.
  """
  cosine = np.asarray(cosine)
  steps = np.arange(cosine.shape[0])
  fig, (ax,) = _figure()
  if band is not None:
    band = np.asarray(band)
    ax.fill_between(steps, band[0], band[1], color='C0', alpha=0.25, lw=0, label='bootstrap')
  ax.plot(steps, cosine, 'o-', color='C0', ms=3, label='cos(planes)')
  if fit is not None and cue_onset is not None:
    window = np.linspace(fit['start'], fit['stop'] - 1, 200)
    params = fit['sigmoid_params']
    ax.plot(window, planes.sigmoid_curve(window - cue_onset, params['low'], params['high'],
                                         params['midpoint'], params['width']),
            color='C3', label=f"sigmoid (MSE {fit['sigmoid_mse']:.3g})")
    ax.plot(window, np.full_like(window, fit['flat_level']), color='C2', ls='--',
            label=f"flat (MSE {fit['flat_mse']:.3g})")
  if epoch_starts:
    mark_epochs(ax, epoch_starts)
  elif cue_onset is not None:
    ax.axvline(cue_onset - 0.5, color='k', lw=1.0)
  ax.set(xlabel='time step', ylabel='|cos| between item planes', ylim=(-0.02, 1.02))
  ax.set_title(title, pad=18)
  ax.legend(fontsize=7, loc='best')
  return fig


def plot_swap_auc(auc, band=None, epoch_starts: Mapping[str, int] | None = None,
                  title: str = 'Setting up for failure') -> Figure:
  """Swap-decoding AUC over time with the shuffled-label chance band. auc (T,), band (2, T)."""
  auc = np.asarray(auc)
  steps = np.arange(auc.shape[0])
  fig, (ax,) = _figure()
  if band is not None:
    band = np.asarray(band)
    ax.fill_between(steps, band[0], band[1], color='0.7', alpha=0.5, lw=0,
                    label='chance (shuffled)')
  ax.axhline(0.5, color='0.5', lw=0.7)
  ax.plot(steps, auc, 'o-', color='C1', ms=3, label='swap AUC (held out)')
  mark_epochs(ax, epoch_starts)
  ax.set(xlabel='time step', ylabel='AUC', ylim=(0.0, 1.0))
  ax.set_title(title, pad=18)
  ax.legend(fontsize=7, loc='lower left')
  return fig


def plot_cross_temporal(matrix, epoch_starts: Mapping[str, int] | None = None,
                        label: str = 'circular error (rad)', cmap: str = 'viridis_r',
                        vmin=None, vmax=None,
                        title: str = 'Cross-temporal decoding') -> Figure:
  """A (T, T) decoding matrix: rows the training time, columns the testing time."""
  matrix = np.asarray(matrix)
  fig, (ax,) = _figure(4.5, 4.0)
  image = ax.imshow(matrix, origin='lower', cmap=cmap, vmin=vmin, vmax=vmax,
                    interpolation='nearest')
  fig.colorbar(image, ax=ax, label=label, shrink=0.8)
  for name, start in (epoch_starts or {}).items():
    ax.axvline(start - 0.5, color='w', lw=0.6, ls=':')
    ax.axhline(start - 0.5, color='w', lw=0.6, ls=':')
  ax.set(xlabel='test time step', ylabel='train time step', title=title)
  return fig


def plot_pca(explained, trajectories=None, colour_angles=None,
             epoch_starts: Mapping[str, int] | None = None, title: str = 'PCA') -> Figure:
  """Variance explained per component, and trajectories in the top two components.

  Args:
    explained: (c,) fractions of variance.
    trajectories: optional (T, K, >=2) projections (e.g. display-mean states projected).
    colour_angles: optional (K,) angles colouring the trajectories on a circular colour map.
    epoch_starts: optional; a marker is drawn where each epoch starts.
  """
  explained = np.asarray(explained)
  ncols = 1 if trajectories is None else 2
  fig, axes = _figure(4.5, 3.8, ncols)
  shown = min(explained.shape[0], 20)
  axes[0].bar(np.arange(1, shown + 1), explained[:shown], color='C0', label='per component')
  axes[0].plot(np.arange(1, shown + 1), np.cumsum(explained)[:shown], 'k.-', label='cumulative')
  axes[0].set(xlabel='component', ylabel='fraction of variance', ylim=(0, 1.02), title=title)
  axes[0].legend(fontsize=7)
  if trajectories is not None:
    trajectories = np.asarray(trajectories)
    ax = axes[1]
    num_displays = trajectories.shape[1]
    if colour_angles is None:
      colours = [f'C{k % 10}' for k in range(num_displays)]
    else:
      norm = mcolors.Normalize(-np.pi, np.pi)
      colours = cm.hsv(norm(np.asarray(colour_angles)))
    for k in range(num_displays):
      ax.plot(trajectories[:, k, 0], trajectories[:, k, 1], color=colours[k], lw=0.8)
      ax.plot(trajectories[-1, k, 0], trajectories[-1, k, 1], 'o', color=colours[k], ms=2.5)
    markers = 'sv^Dp*'
    for i, (name, start) in enumerate((epoch_starts or {}).items()):
      if start < trajectories.shape[0]:
        ax.scatter(trajectories[start, :, 0], trajectories[start, :, 1], marker=markers[i % 6],
                   s=12, facecolors='none', edgecolors='k', lw=0.5, label=name)
    if epoch_starts:
      ax.legend(fontsize=6, title='epoch start', title_fontsize=6)
    ax.set(xlabel='PC 1', ylabel='PC 2', title='trajectories')
  return fig


def plot_eigenvalues(eigenvalues, discrete: bool = True, q=None,
                     title: str = 'Fixed-point Jacobian spectra') -> Figure:
  """Eigenvalues of fixed points' Jacobians on the complex plane.

  Args:
    eigenvalues: (P, n) complex, one row per fixed point.
    discrete: True for a map's Jacobian (unit circle = stability boundary), False for a flow's
      (imaginary axis).
    q: optional (P,) speeds, shown as the colour of each point's eigenvalues.
  """
  eigenvalues = np.atleast_2d(np.asarray(eigenvalues))
  fig, (ax,) = _figure(4.2, 4.0)
  if discrete:
    angle = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(angle), np.sin(angle), color='0.5', lw=0.8)
  else:
    ax.axvline(0.0, color='0.5', lw=0.8)
  if eigenvalues.size:
    num_points = eigenvalues.shape[0]
    values = (np.log10(np.maximum(np.asarray(q), 1e-30)) if q is not None
              else np.arange(num_points))
    colour = np.repeat(values, eigenvalues.shape[1])
    scatter = ax.scatter(eigenvalues.real.ravel(), eigenvalues.imag.ravel(), c=colour, s=8,
                         cmap='plasma', alpha=0.8)
    fig.colorbar(scatter, ax=ax, shrink=0.8,
                 label='log10 q' if q is not None else 'fixed point index')
  ax.set(xlabel='Re', ylabel='Im', title=f'{title} ({eigenvalues.shape[0]} points)')
  ax.set_aspect('equal', adjustable='datalim')
  return fig


# ------------------------------------------------------------------ the paper's protocol


def shade_epochs(ax, spans: Mapping[str, tuple[int, int]], highlight: str = 'cue'):
  """Epochs as bands: the `highlight` epoch shaded, every boundary dotted, and each epoch's
  name centred over it (epochs shorter than 3 steps are left unnamed rather than overlap)."""
  for name, (start, stop) in spans.items():
    if name == highlight:
      ax.axvspan(start - 0.5, stop - 0.5, color='0.85', lw=0, zorder=0)
    ax.axvline(start - 0.5, color='0.6', lw=0.6, ls=':', zorder=0)
    if stop - start >= 3:
      ax.text(0.5 * (start + stop) - 0.5, 1.01, name, transform=ax.get_xaxis_transform(),
              fontsize=7, ha='center', va='bottom', color='0.3')


def plot_paper_alignment(mean, band, fit: Mapping | None, spans: Mapping[str, tuple[int, int]],
                         cue_onset: int, title: str) -> Figure:
  """Mean plane alignment over cue pairs (steps from the delay's start) with its bootstrap band
  over pairs and the sigmoid and flat fits."""
  mean = np.asarray(mean)
  steps = np.arange(mean.shape[0])
  fig, (ax,) = _figure(6.0, 3.6)
  shade_epochs(ax, spans)
  ax.fill_between(steps, band[0], band[1], color='C0', alpha=0.25, lw=0,
                  label='95% bootstrap over cue pairs')
  ax.plot(steps, mean, 'o-', color='C0', ms=2.5, label='mean over cue pairs')
  if fit is not None:
    params = fit['sigmoid_params']
    grid = np.linspace(steps[0], steps[-1], 300)
    ax.plot(grid, planes.sigmoid_curve(grid - cue_onset, params['low'], params['high'],
                                       params['midpoint'], params['width']), color='C3',
            label=f"sigmoid fit (MSE {fit['sigmoid_mse']:.2g})")
    ax.axhline(fit['flat_level'], color='C2', ls='--',
               label=f"flat fit (MSE {fit['flat_mse']:.2g})")
  ax.set(xlabel='time step from the start of the delay', ylabel='|cos| between the cued-item '
         'planes', ylim=(-0.02, 1.02))
  ax.set_title(title, fontsize=9, pad=14)
  ax.legend(fontsize=7, loc='lower right')
  return fig


def plot_precue_vs_distance(distance, alignment, prediction: Mapping, title: str) -> Figure:
  """Each cue pair's alignment at the last pre-cue step against its cue distance, the mean per
  distance and the least-squares line, with the slope and rank correlation in the legend."""
  distance, alignment = np.asarray(distance, float), np.asarray(alignment, float)
  fig, (ax,) = _figure(4.6, 3.6)
  ax.scatter(np.degrees(distance), alignment, s=10, color='0.5', label='cue pair')
  ax.plot(np.degrees(prediction['distances']), prediction['means'], 'o-', color='C0',
          label='mean per distance')
  slope = prediction['slope']
  if np.isfinite(slope):
    keep = np.isfinite(alignment)
    intercept = np.mean(alignment[keep]) - slope * np.mean(distance[keep])
    grid = np.linspace(distance.min(), distance.max(), 50)
    lo, hi = prediction['slope_interval']
    rlo, rhi = prediction['spearman_interval']
    ax.plot(np.degrees(grid), intercept + slope * grid, color='C3',
            label=f'slope {slope:.3f}/rad [{lo:.3f}, {hi:.3f}]\n'
                  f'Spearman {prediction["spearman"]:.2f} [{rlo:.2f}, {rhi:.2f}]')
  ax.set(xlabel='cue distance between the items (degrees)',
         ylabel='|cos| at the last pre-cue step', ylim=(-0.02, 1.02))
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  return fig


def plot_swap_decision(auc, band, projection_correct, projection_swap,
                       spans: Mapping[str, tuple[int, int]], title: str) -> Figure:
  """Left: AUC of swap vs correct trials of the same display at every step, with the
  shuffled-label band. Right: the trials' display-centred projection on the most discriminating
  null-space direction, mean and s.d. of correct and of swap trials."""
  auc = np.asarray(auc)
  steps = np.arange(auc.shape[0])
  fig, axes = _figure(5.0, 3.6, ncols=2)
  ax = axes[0]
  shade_epochs(ax, spans)
  ax.fill_between(steps, band[0], band[1], color='0.6', alpha=0.4, lw=0,
                  label='chance (labels shuffled within display)')
  ax.plot(steps, auc, 'o-', color='C1', ms=2.5, label='swap vs correct (held out)')
  ax.set(xlabel='time step from the start of the delay', ylabel='decoder AUC', ylim=(0.3, 1.0))
  ax.legend(fontsize=7, loc='upper left')
  ax = axes[1]
  shade_epochs(ax, spans)
  for values, colour, label in ((projection_correct, 'C0', 'correct trials'),
                                (projection_swap, 'C3', 'swap trials')):
    values = np.asarray(values, float)
    if values.size:
      mean, sd = values.mean(axis=1), values.std(axis=1)
      ax.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.2, lw=0)
      ax.plot(steps, mean, color=colour, label=f'{label} (mean ± s.d.)')
  ax.set(xlabel='time step from the start of the delay',
         ylabel='projection on the swap direction (a.u.)')
  ax.legend(fontsize=7, loc='upper left')
  fig.suptitle(title, fontsize=9)
  return fig
