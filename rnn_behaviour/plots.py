"""Figures of a run: response distributions, swap rate by cue distance, training curves."""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from rnn_behaviour import files  # pylint: disable=g-import-not-at-top


def _choose_displays(weights, cued, count: int):
  """Displays spread over the range of non-target weight, most swap-prone included."""
  num_items = weights.shape[1] - 1
  nontarget = weights[:, 1:] * (np.arange(num_items)[None] != cued[:, None])
  order = np.argsort(-nontarget.max(axis=1))
  picks = np.linspace(0, len(order) - 1, count).round().astype(int)
  return order[np.unique(picks)]


def response_histograms(arrays, path: str, count: int = 6, bins: int = 48):
  """Histograms of network vs surrogate responses on `count` displays, items marked."""
  report, cued = np.asarray(arrays['report']), np.asarray(arrays['cued'])
  weights, cue = np.asarray(arrays['weights']), np.asarray(arrays['cue'])
  chosen = _choose_displays(weights, cued, count)
  cols = min(3, len(chosen))
  rows = int(np.ceil(len(chosen) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
  edges = np.linspace(-np.pi, np.pi, bins + 1)
  for ax, k in zip(axes.flat, chosen):
    ax.hist(np.asarray(arrays['surrogate'][k]), edges, density=True, alpha=0.45,
            color='tab:gray', label='surrogate (truth)')
    ax.hist(np.asarray(arrays['network'][k]), edges, density=True, histtype='step', lw=1.8,
            color='tab:blue', label='network')
    for j, r in enumerate(report[k]):
      is_target = j == cued[k]
      ax.axvline(r, color='tab:green' if is_target else 'tab:red', ls='-' if is_target else '--',
                 lw=1.2, label='target' if is_target else 'non-target')
    nontarget = [j for j in range(report.shape[1]) if j != cued[k]]
    dc = np.abs((cue[k, nontarget] - cue[k, cued[k]] + np.pi) % (2 * np.pi) - np.pi)
    ax.set_title(f'display {k}: non-target cue distance {", ".join(f"{d:.2f}" for d in dc)} '
                 f'rad\nmodel swap weight {weights[k, 1:][nontarget].sum():.2f}', fontsize=9)
    ax.set_xlim(-np.pi, np.pi)
    ax.set_xlabel('response (rad)')
    ax.set_ylabel('density (1/rad)')
  for ax in list(axes.flat)[len(chosen):]:
    ax.axis('off')
  handles, labels = axes.flat[0].get_legend_handles_labels()
  unique = dict(zip(labels, handles))
  samples = np.asarray(arrays['network']).shape[1]
  fig.suptitle(f'Responses on {len(chosen)} of {len(report)} held-out displays '
               f'({samples} samples each): network vs generating model', fontsize=10)
  height = fig.get_figheight()   # The title and legend take a fixed 0.8 inch at the top.
  fig.legend(unique.values(), unique.keys(), loc='upper center', ncol=4, fontsize=8,
             bbox_to_anchor=(0.5, 1 - 0.3 / height))
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 / height))
  files.save_figure(fig, path)
  plt.close(fig)


def swap_rate_by_distance(summary: dict, path: str):
  """Swap rate against cue distance: network, truth (same estimator) and model weight."""
  centres = np.array(summary['cue_distance_bins']['centres'])
  rates = summary['swap_rate_by_cue_distance']
  fig, ax = plt.subplots(figsize=(5, 3.6))
  ax.plot(centres, rates['truth'], 'o-', color='tab:gray', label='truth (surrogate samples)')
  ax.plot(centres, rates['model_weight'], ':', color='k', label='model swap weight')
  ax.plot(centres, rates['network'], 's-', color='tab:blue', label='network')
  ax.set_xlabel('cue distance of non-target (rad)')
  ax.set_ylabel('fraction of responses nearest it')
  ax.set_ylim(bottom=0)
  ax.legend(fontsize=8)
  ax.set_title(f"Swap rate by cue distance ({summary['num_displays']} displays x "
               f"{summary['samples_per_display']} samples)\n"
               f"max |network - truth| = {rates['max_abs_error']:.3f}", fontsize=9)
  fig.tight_layout()
  files.save_figure(fig, path)
  plt.close(fig)


def swap_function(result: dict, path: str):
  """Swap logit over cue distance of BNS fits: network vs generating model (90% bands)."""
  fig, ax = plt.subplots(figsize=(5, 3.6))
  styles = {'surrogate': ('tab:gray', 'generating model (BNS on its samples)'),
            'data_fit': ('k', 'BNS fitted to data'),
            'exact': ('k', 'generating function (exact)'),
            'network': ('tab:blue', 'network (BNS on its samples)')}
  for name, (color, label) in styles.items():
    if name not in result:
      continue
    curve = result[name]
    exact = name in ('data_fit', 'exact')
    ax.plot(curve['distance'], curve['mean'], color=color, ls=':' if exact else '-', label=label)
    if not exact:
      ax.fill_between(curve['distance'], curve['lower'], curve['upper'], color=color, alpha=0.25,
                      lw=0)
  ax.set_xlabel('cue distance of non-target (rad)')
  ax.set_ylabel('swap logit f(d) (log-odds)')
  ax.set_title(f"Swap function of BNS fits ({result.get('samples_per_display', '?')} responses "
               f"a display)\nmean |network - generating| = {result['logit_error']:.2f}",
               fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  files.save_figure(fig, path)
  plt.close(fig)


def training_curve(metrics: list[dict], path: str):
  """Training loss (and its denoising part) against step, log scale."""
  fig, ax = plt.subplots(figsize=(5, 3.6))
  if metrics:
    steps = [m['step'] for m in metrics]
    ax.plot(steps, [m['loss'] for m in metrics], label='loss')
    if 'denoise' in metrics[0]:
      ax.plot(steps, [m['denoise'] for m in metrics], '--', label='denoising term')
    ax.set_yscale('log')
    ax.legend(fontsize=8)
  else:
    ax.text(0.5, 0.5, 'no metrics logged', ha='center', va='center', transform=ax.transAxes)
  ax.set_xlabel('training step')
  ax.set_ylabel('loss (squared readout units, log scale)')
  ax.set_title('Training loss', fontsize=9)
  fig.tight_layout()
  files.save_figure(fig, path)
  plt.close(fig)


def network_vs_trials(result: dict, path: str, bins: int = 48):
  """The network against real trials (`evaluate.judge_on_trials`): error histograms and swap
  rate by cue distance."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6))
  edges = np.linspace(-np.pi, np.pi, bins + 1)
  errors = result['errors']
  left.hist(errors['data'], edges, density=True, color='tab:gray', alpha=0.5,
            label=f"data ({result['num_trials']} trials)")
  left.hist(errors['network'], edges, density=True, histtype='step', lw=1.8, color='tab:blue',
            label=f"network ({result['samples_per_trial']} samples a trial)")
  left.set_xlim(-np.pi, np.pi)
  left.set_xlabel('response - target (rad)')
  left.set_ylabel('density (1/rad)')
  left.set_title('Response error on the real displays', fontsize=9)
  left.legend(fontsize=8)
  centres = result['cue_distance_bins']['centres']
  rates = result['swap_rate_by_cue_distance']
  right.plot(centres, rates['data'], 'o-', color='tab:gray', label='data')
  right.plot(centres, rates['network'], 's-', color='tab:blue', label='network')
  right.set_xlabel('cue distance of non-target (rad)')
  right.set_ylabel('fraction of responses nearest it')
  right.set_ylim(bottom=0)
  right.set_title('Swap rate by cue distance on the real displays', fontsize=9)
  right.legend(fontsize=8)
  fig.tight_layout()
  files.save_figure(fig, path)
  plt.close(fig)
