"""Judging objectives head to head: same budget, seeds and target behaviour (METHOD 6-7).

`compare(comparison, workdir)` trains and evaluates one run per objective and seed
(`workdir/<objective>/seed_<s>/`, each resumable), then writes `comparison.csv` (objective, seed,
swap_curve_error, distance_ratio, circ_sd_error, heldout_loglik), `comparison.md` (mean and
s.e.m. over seeds, plus `bns_logit_error`: how far the swap function of a BNS fitted to the
network's responses lies from the one fitted to the generating model's), `comparison.png`, and
`swap_functions.png` / `swap_functions.csv` (those BNS swap functions overlaid per objective). With a BNS target the behaviour is fitted once into
`workdir/behaviour/` and shared by every run. Runs already finished are not repeated.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import warnings

from absl import logging
import numpy as np

from rnn_behaviour import curriculum
from rnn_behaviour import modes

COLUMNS = ('objective', 'seed', 'swap_curve_error', 'distance_ratio', 'circ_sd_error',
           'heldout_loglik')
SWAP_FUNCTION_COLUMNS = ('objective', 'seed', 'fitted_to', 'distance', 'logit_mean',
                         'logit_lower', 'logit_upper')


def run_config(comparison, name: str, seed: int, behaviour_dir: str):
  """The training config of one objective and seed."""
  objective, signature = comparison.objectives[name]
  config = importlib.import_module(f'rnn_behaviour.configs.{comparison.base}').get_config()
  curriculum.merge_overrides(config, comparison.overrides)
  config.seed = int(seed)
  config.objective.name = objective
  config.behaviour.signature = signature
  if config.behaviour.source == 'bns' and not config.behaviour.fit:
    config.behaviour.fit = behaviour_dir
  return config


def row_from_summary(name: str, seed: int, summary: dict) -> dict:
  """The comparison columns of one evaluation summary."""
  bins = summary['swap_rate_by_cue_distance']
  net, truth = np.array(bins['network'], float), np.array(bins['truth'], float)
  valid = ~np.isnan(truth) & ~np.isnan(net)
  sd = summary['circular_sd_around_target']
  return dict(objective=name, seed=seed,
              swap_curve_error=float(np.mean(np.abs(net - truth)[valid])),
              distance_ratio=summary['energy_distance']['ratio_to_floor'],
              circ_sd_error=abs(sd['network'] - sd['truth']),
              heldout_loglik=summary['heldout_loglik']['network'],
              bns_logit_error=summary.get('bns_swap_function', {}).get('logit_error',
                                                                        float('nan')))


def markdown_table(rows: list[dict]) -> str:
  """Mean +- s.e.m. over seeds per objective."""
  names = list(dict.fromkeys(r['objective'] for r in rows))
  metrics = COLUMNS[2:] + tuple(m for m in ('bns_logit_error',) if m in rows[0])
  lines = ['| objective | seeds | ' + ' | '.join(metrics) + ' |',
           '| --- | --- | ' + ' | '.join('---' for _ in metrics) + ' |']
  for name in names:
    mine = [r for r in rows if r['objective'] == name]
    cells = []
    for m in metrics:
      v = np.array([r[m] for r in mine], float)
      sem = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float('nan')
      cells.append(f'{v.mean():.3f} ± {sem:.3f}')
    lines.append(f'| {name} | {len(mine)} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(rows: list[dict], curves: dict, path: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(dict.fromkeys(r['objective'] for r in rows))
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for i, metric in enumerate(('swap_curve_error', 'distance_ratio')):
    ax = axes[i]
    for j, name in enumerate(names):
      v = [r[metric] for r in rows if r['objective'] == name]
      ax.scatter(np.full(len(v), j), v, color=f'C{j}')
      ax.plot([j - 0.2, j + 0.2], [np.mean(v)] * 2, color='k')
    ax.set_xticks(range(len(names)), names, rotation=30, ha='right', fontsize=8)
    ax.set_ylabel(metric)
    if metric == 'distance_ratio':
      ax.set_yscale('log')
  ax = axes[2]
  for j, name in enumerate(names):
    centres, rates = curves[name]
    with warnings.catch_warnings():  # A bin no run has pairs in stays NaN.
      warnings.simplefilter('ignore', RuntimeWarning)
      mean = np.nanmean(rates, axis=0)
    ax.plot(centres, mean, 'o-', color=f'C{j}', label=name)
  truth = curves['__truth__']
  ax.plot(truth[0], truth[1], 'k--', lw=2, label='truth')
  ax.set_xlabel('cue distance of non-target (rad)')
  ax.set_ylabel('swap rate (mean over seeds)')
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_swap_functions(functions: dict, path: str):
  """One panel per objective: each seed's network swap function over the generating one."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(functions)
  cols = min(3, len(names))
  rows = int(np.ceil(len(names) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False,
                           sharey=True)
  for ax, name in zip(axes.flat, names):
    for i, result in enumerate(functions[name]):
      truth, net = result['surrogate'], result['network']
      if i == 0:
        ax.fill_between(truth['distance'], truth['lower'], truth['upper'], color='tab:gray',
                        alpha=0.35, lw=0, label='generating (90%)')
        ax.plot(truth['distance'], truth['mean'], color='k', lw=1.5)
        for exact, label in (('data_fit', 'BNS fit to data'), ('exact', 'exact')):
          if exact in result:
            ax.plot(result[exact]['distance'], result[exact]['mean'], 'k:', label=label)
      ax.plot(net['distance'], net['mean'], color=f'C{i}', label=f'network seed {i}')
      ax.fill_between(net['distance'], net['lower'], net['upper'], color=f'C{i}', alpha=0.15,
                      lw=0)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel('cue distance (rad)')
    ax.set_ylabel('swap logit f(d)')
  for ax in list(axes.flat)[len(names):]:
    ax.axis('off')
  axes.flat[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _swap_function_rows(name: str, seed: int, result: dict) -> list[dict]:
  rows = []
  for fitted_to in ('network', 'surrogate', 'data_fit', 'exact'):
    if fitted_to in result:
      c = result[fitted_to]
      rows += [dict(objective=name, seed=seed, fitted_to=fitted_to, distance=d, logit_mean=m,
                    logit_lower=lo, logit_upper=hi)
               for d, m, lo, hi in zip(c['distance'], c['mean'], c['lower'], c['upper'])]
  return rows


def compare(comparison, workdir: str) -> list[dict]:
  os.makedirs(workdir, exist_ok=True)
  behaviour_dir = os.path.join(workdir, 'behaviour')
  rows, curves, functions, function_rows, reference = [], {}, {}, [], []
  for name in comparison.objectives:
    for seed in comparison.seeds:
      config = run_config(comparison, name, seed, behaviour_dir)
      if config.behaviour.source == 'bns' and not os.path.isdir(behaviour_dir):
        from rnn_behaviour.behaviour import pipeline  # pylint: disable=g-import-not-at-top
        pipeline.fit_behaviour(config, workdir)
      run_dir = os.path.join(workdir, name, f'seed_{seed}')
      summary_path = os.path.join(run_dir, 'eval', 'summary.json')
      done = False
      if os.path.exists(summary_path):
        with open(summary_path) as f:
          done = json.load(f).get('trained_steps') == config.train.num_steps
      if not done:
        logging.info('Running %s seed %d in %s', name, seed, run_dir)
        modes.run(config, run_dir, 'all')
      with open(summary_path) as f:
        summary = json.load(f)
      if config.eval.bns_svi_steps > 0 and 'bns_swap_function' not in summary:
        from rnn_behaviour import evaluate  # pylint: disable=g-import-not-at-top
        summary['bns_swap_function'] = evaluate.add_swap_function_judgement(config, run_dir)
      if 'bns_swap_function' in summary:
        functions.setdefault(name, []).append(summary['bns_swap_function'])
        function_rows += _swap_function_rows(name, seed, summary['bns_swap_function'])
      rows.append(row_from_summary(name, seed, summary))
      reference.append(summary['heldout_loglik'])
      bins = summary['swap_rate_by_cue_distance']
      centres = summary['cue_distance_bins']['centres']
      curves.setdefault(name, (centres, []))[1].append(bins['network'])
      curves['__truth__'] = (centres, bins['truth'])
  with open(os.path.join(workdir, 'comparison.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
  if functions:
    with open(os.path.join(workdir, 'swap_functions.csv'), 'w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=SWAP_FUNCTION_COLUMNS)
      writer.writeheader()
      writer.writerows(function_rows)
    plot_swap_functions(functions, os.path.join(workdir, 'swap_functions.png'))
  table = markdown_table(rows)
  if reference:
    table += (f"\nheldout_loglik is per trial (nats) on {reference[0]['observations']}, under a "
              f"von Mises kernel density (kappa {reference[0]['kde_concentration']}) of each "
              f"network's samples; the generating behavioural model scores "
              f"{np.mean([r['behaviour_model'] for r in reference]):.3f} the same way.\n")
  with open(os.path.join(workdir, 'comparison.md'), 'w') as f:
    f.write(table)
  plot(rows, {k: (c, np.array(r, float)) if k != '__truth__' else (c, r)
              for k, (c, r) in curves.items()}, os.path.join(workdir, 'comparison.png'))
  logging.info('Comparison:\n%s', table)
  return rows
