"""Judging objectives head to head: same budget, seeds and target behaviour (METHOD 6-7).

`compare(comparison, workdir)` trains and evaluates every objective on every seed, then writes
`comparison.csv` (objective, seed, swap_curve_error, distance_ratio, circ_sd_error,
heldout_loglik), `comparison.md` (mean and s.e.m. over seeds, plus `bns_logit_error`: how far
the swap function of a BNS fitted to the network's responses lies from the one fitted to the
generating model's), `comparison.png`, and `swap_functions.png` / `swap_functions.csv` (those
BNS swap functions overlaid per objective). With a BNS target the behaviour is fitted once into
`workdir/behaviour/` and shared by every run.

How each objective trains (`comparison.ensembles`, default True):

- True: the seeds of one objective are one seed ensemble (`config.train.ensemble_size = E`,
  one vmapped, jitted step for all E networks), trained in `workdir/<objective>/`. The seeds must
  be consecutive, s0, s0 + 1, ..., as ensemble members are config.seed + 0..E-1 (other seed
  lists, and a single seed, fall back to one run per seed). Once trained, member i is exported
  to `workdir/<objective>/seed_<s0+i>/` as a standalone run of that seed (its final checkpoint,
  config.json, metrics.jsonl and `ensemble_member.json` naming the ensemble) and evaluated
  there, so that `seed_<s>/eval/summary.json` and every reader of seed folders (e.g.
  `analysis.run_analysis.analyse_comparison`) work as before. Member i computes what the
  standalone run of seed s0 + i computes (tests/test_ensemble.py), so the numbers agree with
  the old layout up to float rounding (tests/test_compare_objectives.py).
- False: one run per objective and seed in `workdir/<objective>/seed_<s>/`, as before.

An objective folder that already holds runs keeps its layout whatever the switch says (an
ensemble run in the folder itself, or standalone seed runs), so interrupted work resumes and
old workdirs are read back. Seeds whose runs are finished (trained to train.num_steps and
evaluated) are not repeated. The wall time of each training, export and evaluation is
appended to `workdir/timings.jsonl` (experiments/benchmark_comparison.py compares the layouts).

Files go through etils `epath`, so the workdir may be a cloud path (`gs://bucket/...`); the
checkpoints themselves are orbax's (train.checkpoint_manager), which reads and writes gs://
on its own.
"""

from __future__ import annotations

import csv
import functools
import importlib
import io
import json
import os
import posixpath
import time
import warnings

from absl import logging
from etils import epath
import numpy as np
import orbax.checkpoint as ocp

from rnn_behaviour import checkpoints
from rnn_behaviour import curriculum
from rnn_behaviour import evaluate
from rnn_behaviour import files
from rnn_behaviour import modes
from rnn_behaviour import train
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.behaviour import pipeline

COLUMNS = ('objective', 'seed', 'swap_curve_error', 'distance_ratio', 'circ_sd_error',
           'heldout_loglik')
SWAP_FUNCTION_COLUMNS = ('objective', 'seed', 'fitted_to', 'distance', 'logit_mean',
                         'logit_lower', 'logit_upper')
MEMBER_FILE = 'ensemble_member.json'   # In a seed folder exported from an ensemble.
TIMINGS_FILE = 'timings.jsonl'         # Wall time of each training, export and evaluation.


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


def seed_folder(workdir: str, name: str, seed: int) -> str:
  """The run folder of one objective and seed: `workdir/<objective>/seed_<s>/`."""
  return os.fspath(epath.Path(workdir) / name / f'seed_{seed}')


def ensemble_config(comparison, name: str, behaviour_dir: str):
  """The training config of one objective's ensemble: seeds comparison.seeds[0] + 0..E-1."""
  seeds = [int(s) for s in comparison.seeds]
  config = run_config(comparison, name, seeds[0], behaviour_dir)
  config.train.ensemble_size = len(seeds)
  return config


def wants_ensembles(comparison) -> bool:
  """Whether new objectives train as ensembles: `comparison.ensembles` (default True), more than
  one seed, and consecutive seeds (an ensemble's members are config.seed + 0..E-1; other seed
  lists fall back to one run per seed, with a warning)."""
  seeds = [int(s) for s in comparison.seeds]
  if not comparison.get('ensembles', True) or len(seeds) < 2:
    return False
  if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
    logging.warning('comparison.seeds %s are not consecutive, so they cannot be one ensemble '
                    '(seeds s0 + 0..E-1): training one run per seed.', seeds)
    return False
  return True


def objective_layout(comparison, folder: str, seeds) -> str:
  """'ensemble' or 'per_seed': how one objective's folder is (or will be) trained.

  A folder that already holds a run keeps its layout whatever comparison.ensembles says, so that
  it resumes and its finished runs are read back: an ensemble run in `folder` itself, or
  standalone runs in its `seed_<s>/` (a seed folder exported from an ensemble is not one).
  """
  folder = epath.Path(folder)
  if (folder / 'config.json').exists():
    return 'ensemble'
  for seed in seeds:
    run_dir = folder / f'seed_{seed}'
    if (run_dir / 'config.json').exists() and not (run_dir / MEMBER_FILE).exists():
      return 'per_seed'
  return 'ensemble' if wants_ensembles(comparison) else 'per_seed'


def finished(config, run_dir: str) -> bool:
  """Whether a seed's run is trained to config.train.num_steps and evaluated. A member exported
  from an ensemble counts once its ensemble trained that far, even if the member stopped early
  (a diverging member is frozen at its last good state, and its summary says so). An
  evaluation folder without its completeness marker (interrupted) does not count."""
  summary = evaluate.read_summary(run_dir)
  if summary is None:
    return False
  if summary.get('trained_steps') == config.train.num_steps:
    return True
  member = epath.Path(run_dir) / MEMBER_FILE
  if not member.exists():
    return False
  return json.loads(member.read_text()).get('ensemble_step') == config.train.num_steps


def export_member(config, ensemble_dir: str, state, member: int, seed: int, run_dir: str):
  """Writes ensemble member `member` (its sliced TrainState) as a standalone run of seed `seed`
  in `run_dir`: its final checkpoint, config.json (the config of that seed's standalone run),
  metrics.jsonl (the member's copy) and MEMBER_FILE. Evaluation and analysis then read it as
  any run; training it further would resume it as a standalone run."""
  folder = epath.Path(run_dir)
  if (folder / MEMBER_FILE).exists():
    (folder / MEMBER_FILE).unlink()
  evaluate.eval_dir(folder).rmtree(missing_ok=True)    # The evaluation of the stale export.
  checkpoint_dir = folder / workdir_lib.CHECKPOINT_DIR
  if checkpoint_dir.is_dir():
    checkpoint_dir.rmtree()
  train.save_config(config, run_dir)
  manager = train.checkpoint_manager(run_dir, config.train)
  try:
    manager.save(int(state.step), args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
  finally:
    manager.close()
  metrics = (epath.Path(ensemble_dir) / train.MEMBERS_DIR / f'member_{member}'
             / train.METRICS_FILE)
  if metrics.exists():
    metrics.copy(folder / train.METRICS_FILE, overwrite=True)
  # The ensemble as a path relative to the seed folder ('..' in the comparison's layout): string
  # arithmetic on the normalised paths, valid for gs:// as for local ones.
  ensemble = posixpath.relpath(os.fspath(epath.Path(ensemble_dir)), os.fspath(folder))
  (folder / MEMBER_FILE).write_text(json.dumps(
      dict(ensemble=ensemble, member=member, seed=seed,
           ensemble_step=checkpoints.latest_step(ensemble_dir),
           member_step=int(state.step)), indent=2))


def _timed(workdir: str, record: dict, work):
  """Runs `work()` and appends its wall time to `workdir/timings.jsonl`."""
  start = time.perf_counter()
  work()
  files.append_jsonl(os.fspath(epath.Path(workdir) / TIMINGS_FILE),
                           dict(record, seconds=time.perf_counter() - start))


def run_objective(comparison, name: str, workdir: str, behaviour_dir: str) -> None:
  """Trains and evaluates every seed of one objective that is not finished yet.

  Layout 'ensemble' (objective_layout): one run of all seeds in `workdir/<name>/` (resumed if
  interrupted), then each unfinished member exported to `seed_<s>/` and evaluated there.
  Layout 'per_seed': one run per seed in `seed_<s>/`, trained then evaluated.
  """
  seeds = [int(s) for s in comparison.seeds]
  folder = os.fspath(epath.Path(workdir) / name)
  configs = {s: run_config(comparison, name, s, behaviour_dir) for s in seeds}
  pending = [s for s in seeds if not finished(configs[s], seed_folder(workdir, name, s))]
  if not pending:
    return
  layout = objective_layout(comparison, folder, seeds)
  record = dict(objective=name, layout=layout)
  if layout == 'per_seed':
    for seed in pending:
      run_dir = seed_folder(workdir, name, seed)
      logging.info('Running %s seed %d in %s', name, seed, run_dir)
      for stage in ('train', 'evaluate'):
        _timed(workdir, dict(record, stage=stage, seeds=[seed]),
               functools.partial(modes.run, configs[seed], run_dir, stage))
    return
  config = ensemble_config(comparison, name, behaviour_dir)
  if checkpoints.latest_step(folder) != config.train.num_steps:
    logging.info('Running %s seeds %s as one ensemble in %s', name, seeds, folder)
    _timed(workdir, dict(record, stage='train', seeds=seeds),
           functools.partial(modes.run, config, folder, 'train'))
  _, states = train.load_trained(config, folder)
  for seed in pending:
    member = seeds.index(seed)
    run_dir = seed_folder(workdir, name, seed)
    state = train.member_slice(states, member)
    if int(state.step) != config.train.num_steps:
      logging.warning('%s seed %d stopped at step %d of %d (it diverged); it is evaluated there.',
                      name, seed, int(state.step), config.train.num_steps)
    _timed(workdir, dict(record, stage='export', seeds=[seed]),
           functools.partial(export_member, configs[seed], folder, state, member, seed, run_dir))
    _timed(workdir, dict(record, stage='evaluate', seeds=[seed]),
           functools.partial(modes.run, configs[seed], run_dir, 'evaluate'))


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
  files.save_figure(fig, path)
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
  files.save_figure(fig, path)
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


def _csv_text(columns, rows, **options) -> str:
  """Rows as CSV text, as csv.DictWriter writes to a file opened with newline=''."""
  text = io.StringIO(newline='')      # epath's cloud files take no newline=: built here.
  writer = csv.DictWriter(text, fieldnames=columns, **options)
  writer.writeheader()
  writer.writerows(rows)
  return text.getvalue()


def write_outputs(workdir: str, rows: list[dict], curves: dict, functions: dict,
                  function_rows: list[dict], reference: list[dict]) -> str:
  """Writes comparison.csv/md/png (and swap_functions.csv/png when there are BNS swap
  functions) into `workdir`; returns the markdown table."""
  root = epath.Path(workdir)
  (root / 'comparison.csv').write_text(_csv_text(COLUMNS, rows, extrasaction='ignore'))
  if functions:
    (root / 'swap_functions.csv').write_text(_csv_text(SWAP_FUNCTION_COLUMNS, function_rows))
    plot_swap_functions(functions, os.fspath(root / 'swap_functions.png'))
  table = markdown_table(rows)
  if reference:
    table += (f"\nheldout_loglik is per trial (nats) on {reference[0]['observations']}, under a "
              f"von Mises kernel density (kappa {reference[0]['kde_concentration']}) of each "
              f"network's samples; the generating behavioural model scores "
              f"{np.mean([r['behaviour_model'] for r in reference]):.3f} the same way.\n")
  (root / 'comparison.md').write_text(table)
  plot(rows, {k: (c, np.array(r, float)) if k != '__truth__' else (c, r)
              for k, (c, r) in curves.items()}, os.fspath(root / 'comparison.png'))
  return table


def compare(comparison, workdir: str) -> list[dict]:
  root = epath.Path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  behaviour_dir = os.fspath(root / 'behaviour')
  rows, curves, functions, function_rows, reference = [], {}, {}, [], []
  for name in comparison.objectives:
    config = run_config(comparison, name, comparison.seeds[0], behaviour_dir)
    if (config.behaviour.source == 'bns' and config.behaviour.fit == behaviour_dir
        and not epath.Path(behaviour_dir).is_dir()):
      pipeline.fit_behaviour(config, workdir)
    run_objective(comparison, name, workdir, behaviour_dir)
    for seed in comparison.seeds:
      config = run_config(comparison, name, seed, behaviour_dir)
      run_dir = seed_folder(workdir, name, seed)
      summary = evaluate.read_summary(run_dir)
      if summary is None:
        raise FileNotFoundError(f'{evaluate.eval_dir(run_dir)} holds no finished evaluation '
                                'although its run was evaluated; rerun the comparison')
      if config.eval.bns_svi_steps > 0 and 'bns_swap_function' not in summary:
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
  table = write_outputs(workdir, rows, curves, functions, function_rows, reference)
  logging.info('Comparison:\n%s', table)
  return rows
