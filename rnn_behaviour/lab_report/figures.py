"""The report's own figures: what the project's figures show for one network, drawn over the
members of an ensemble (lines per member, the spread as a band) and against the held-out real
trials. Each function takes plain arrays or the numbers the stages wrote and returns a
matplotlib Figure; `files.save_figure` writes it.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from rnn_behaviour.analysis import plots as analysis_plots  # pylint: disable=g-import-not-at-top

MEMBER_COLOUR = 'tab:blue'
BASELINE_COLOUR = 'tab:orange'
BNS_COLOUR = 'k'
DATA_COLOUR = 'tab:gray'


def _nanmean(a, axis=0):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    return np.nanmean(np.asarray(a, float), axis=axis)


def learning_curves(curves: dict, title: str):
  """Loss against step per model: {label: (steps (T,), losses (T,))}; the diffusion members on
  the left (log scale), the baseline's own loss on the right."""
  fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
  members = {k: v for k, v in curves.items() if k.startswith('member')}
  others = {k: v for k, v in curves.items() if not k.startswith('member')}
  for ax, group, colour in ((axes[0], members, MEMBER_COLOUR), (axes[1], others,
                                                                BASELINE_COLOUR)):
    for i, (label, (steps, losses)) in enumerate(group.items()):
      if len(steps):
        ax.plot(steps, losses, color=colour, alpha=1.0 - 0.25 * (i % 3), lw=1.2, label=label)
    if group:
      ax.set_yscale('log')
      ax.legend(fontsize=7)
    else:
      ax.text(0.5, 0.5, 'no baseline', ha='center', va='center', transform=ax.transAxes)
    ax.set_xlabel('training step')
  axes[0].set_ylabel('diffusion loss (log scale)')
  axes[0].set_title('Diffusion networks, one line a member', fontsize=9)
  axes[1].set_ylabel('baseline loss (log scale)')
  axes[1].set_title('Baseline', fontsize=9)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def example_displays(report, cue, cued, observed, network, bns, chosen, title: str,
                     bins: int = 36):
  """Response distributions on held-out trials: the members' pooled samples and the BNS's
  against the subject's one response (a marker), items marked.

  Args:
    report, cue: (K, N) item features (rad); cued (K,); observed (K,) the real responses.
    network: (E, K, S) every member's samples; bns: (K, S) the BNS posterior predictive's.
    chosen: indices of the trials to draw.
  """
  chosen = list(chosen)
  cols = min(3, len(chosen))
  rows = int(np.ceil(len(chosen) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.9 * rows), squeeze=False)
  edges = np.linspace(-np.pi, np.pi, bins + 1)
  for ax, k in zip(axes.flat, chosen):
    ax.hist(np.asarray(bns[k]), edges, density=True, color=DATA_COLOUR, alpha=0.45,
            label='BNS posterior predictive (surrogate)')
    ax.hist(np.asarray(network[:, k]).ravel(), edges, density=True, histtype='step', lw=1.6,
            color=MEMBER_COLOUR, label=f'networks ({network.shape[0]} members pooled)')
    for j, r in enumerate(report[k]):
      target = j == cued[k]
      ax.axvline(r, color='tab:green' if target else 'tab:red', ls='-' if target else '--',
                 lw=1.0, label='target' if target else 'non-target')
    ax.plot([observed[k]], [0], marker='^', ms=10, color='k', clip_on=False, ls='none',
            label='the subject\'s response')
    others = [j for j in range(report.shape[1]) if j != cued[k]]
    dc = np.abs((cue[k, others] - cue[k, cued[k]] + np.pi) % (2 * np.pi) - np.pi)
    ax.set_title(f'trial {k}: non-target cue distance '
                 f'{", ".join(f"{d:.2f}" for d in dc)} rad', fontsize=8)
    ax.set_xlim(-np.pi, np.pi)
    ax.set_xlabel('response (rad)', fontsize=8)
    ax.set_ylabel('density (1/rad)', fontsize=8)
  for ax in list(axes.flat)[len(chosen):]:
    ax.axis('off')
  handles, labels = axes.flat[0].get_legend_handles_labels()
  unique = dict(zip(labels, handles))
  height = fig.get_figheight()
  fig.legend(unique.values(), unique.keys(), loc='upper center', ncol=3, fontsize=7,
             bbox_to_anchor=(0.5, 1 - 0.35 / height))
  fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0, 1, 1 - 1.0 / height))
  return fig


def swap_by_distance(panels: list[dict]):
  """Swap rate against the non-target's cue distance on the held-out trials, one panel a set
  size: the members' mean with their min-max band, each member, the baseline, the BNS and the
  data (with a binomial s.e.). Each panel: set_size, centres (B,), members (E, B), bns (B,),
  data (B,), pairs (B,), baseline (B,) or None."""
  fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.6), squeeze=False)
  for ax, p in zip(axes[0], panels):
    centres = np.asarray(p['centres'])
    members = np.asarray(p['members'], float)
    ax.fill_between(centres, np.nanmin(members, 0), np.nanmax(members, 0), color=MEMBER_COLOUR,
                    alpha=0.2, lw=0, label=f'networks: range over {members.shape[0]} members')
    for row in members:
      ax.plot(centres, row, color=MEMBER_COLOUR, lw=0.6, alpha=0.6)
    ax.plot(centres, _nanmean(members), 's-', color=MEMBER_COLOUR, label='networks: mean')
    if p.get('baseline') is not None:
      ax.plot(centres, p['baseline'], 'd--', color=BASELINE_COLOUR, label='baseline')
    ax.plot(centres, p['bns'], 'o:', color=BNS_COLOUR, label='BNS posterior predictive')
    data, pairs = np.asarray(p['data'], float), np.maximum(np.asarray(p['pairs'], float), 1)
    ax.errorbar(centres, data, yerr=np.sqrt(data * (1 - data) / pairs), fmt='o', color=DATA_COLOUR,
                capsize=2, label='held-out data (± s.e.)')
    ax.set_ylim(bottom=0)
    ax.set_xlabel('cue distance of the non-target (rad)')
    ax.set_ylabel('fraction of responses nearest it')
    ax.set_title(f'Set size {p["set_size"]}', fontsize=9)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def heldout_loglik(panels: list[dict]):
  """Held-out log-likelihood per trial of the real responses, one panel a set size: each member,
  the baseline and the BNS (same kernel density). Each panel: set_size, members (E,), bns,
  baseline or None."""
  fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.4), squeeze=False)
  for ax, p in zip(axes[0], panels):
    members = np.asarray(p['members'], float)
    ax.scatter(np.zeros(members.size), members, color=MEMBER_COLOUR, zorder=3)
    ax.plot([-0.2, 0.2], [members.mean()] * 2, color=MEMBER_COLOUR)
    labels = ['diffusion\nnetworks']
    values = [('BNS', p['bns'], BNS_COLOUR)]
    if p.get('baseline') is not None:
      values.insert(0, ('baseline', p['baseline'], BASELINE_COLOUR))
    for i, (name, value, colour) in enumerate(values, start=1):
      ax.scatter([i], [value], color=colour, marker='D', zorder=3)
      labels.append(name)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel('nats a trial (higher: better)')
    ax.set_title(f'Set size {p["set_size"]}', fontsize=9)
  fig.tight_layout()
  return fig


def mechanism_spread(members: list[dict], spans: dict, title: str):
  """The paper protocol over members: plane alignment over time, pre-cue alignment against cue
  distance, swap-decision AUC over time; members as thin lines, their mean thick, the members'
  range as a band. Each member: label, learned (bool), alignment (T,), distances (D,) and
  prediction (D,) means, auc (T,), chance_upper (T,)."""
  fig, axes = plt.subplots(1, 3, figsize=(14.5, 3.7))

  def spread(ax, x, rows, colour):
    rows = np.asarray(rows, float)
    if rows.size:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        ax.fill_between(x, np.nanmin(rows, 0), np.nanmax(rows, 0), color=colour, alpha=0.2,
                        lw=0, label='range over members')
      ax.plot(x, _nanmean(rows), color=colour, lw=2.2, label='mean over members')

  def lines(ax, x, key, y_of=lambda m, k: m[k]):
    for m in members:
      ax.plot(x, y_of(m, key), lw=0.8, ls='-' if m['learned'] else ':',
              label=m['label'] + ('' if m['learned'] else ' (did not learn cue selection)'))

  ax = axes[0]
  steps = np.arange(len(members[0]['alignment']))
  analysis_plots.shade_epochs(ax, spans)
  spread(ax, steps, [m['alignment'] for m in members], 'C0')
  lines(ax, steps, 'alignment')
  ax.set(xlabel='time step from the start of the delay', ylim=(-0.02, 1.02),
         ylabel='|cos| between the cued-item planes')
  ax.set_title('Plane alignment over time', fontsize=9, pad=14)
  ax.legend(fontsize=6, loc='lower right')

  ax = axes[1]
  distances = np.degrees(members[0]['distances'])
  spread(ax, distances, [m['prediction'] for m in members], 'C2')
  for m in members:
    ax.plot(distances, m['prediction'], 'o', ms=3, ls='-' if m['learned'] else ':', lw=0.8)
  ax.set(xlabel='cue distance between the items (degrees)', ylim=(-0.02, 1.02),
         ylabel='|cos| at the last pre-cue step')
  ax.set_title('The pre-cue prediction: nearer cues, more aligned?', fontsize=9)
  ax.legend(fontsize=6)

  ax = axes[2]
  analysis_plots.shade_epochs(ax, spans)
  steps = np.arange(len(members[0]['auc']))
  ax.plot(steps, _nanmean([m['chance_upper'] for m in members]), color='0.5', ls='--', lw=1,
          label='chance band (upper edge, mean)')
  spread(ax, steps, [m['auc'] for m in members], 'C1')
  lines(ax, steps, 'auc')
  ax.set(xlabel='time step from the start of the delay', ylabel='swap vs correct AUC',
         ylim=(0.3, 1.0))
  ax.set_title('When a swap is decided', fontsize=9, pad=14)
  ax.legend(fontsize=6, loc='upper left')
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig
