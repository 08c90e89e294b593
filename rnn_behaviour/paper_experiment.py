"""The paper's mechanism experiment: train its curricula, analyse with its protocol, tabulate.

`run(experiment, workdir)` trains the chains of `experiment.chains` (each a curriculum, seeds as
one ensemble), runs the paper protocol (`analysis/run_paper.py`) on the network of every
(cueing, target) in `experiment.targets` and every member, optionally a preparatory-noise
sweep of the probe chain, and writes into `workdir`:

  paper_mechanisms.csv   cueing, target, seed, swap_rate, sigmoid_mse, flat_mse,
                         alignment_precue, alignment_postcue, precue_distance_slope,
                         response_swap_auc, trial_noise, target_swap_rate, learned (one row
                         per network; learned: it met its cue-selection criterion)
  paper_mechanisms.md    per (cueing, target): how many networks learned, the mean +- s.e.m.
                         over those, the target's own swap rate, and whether the paper's
                         pattern holds in them (not interpreted when none learned)
  paper_alignment.png    the alignment time course per target (mean over seeds), per cueing
  paper_precue_vs_distance.png   pre-cue alignment against cue distance per target
  noise_sweep.csv / .md / .png   the same numbers for the smooth-swap chain at each noise level

Finished stages and analysed networks are read back, not redone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnn_behaviour import curriculum
from rnn_behaviour import diffusion
from rnn_behaviour import files
from rnn_behaviour import task as task_lib
from rnn_behaviour.analysis import decoding
from rnn_behaviour.analysis import paper_protocol as pp
from rnn_behaviour.analysis import plots as analysis_plots
from rnn_behaviour.analysis import run_paper
from rnn_behaviour.behaviour import source

COLUMNS = ('cueing', 'target', 'seed', 'swap_rate', 'sigmoid_mse', 'flat_mse', 'alignment_precue',
           'alignment_postcue', 'precue_distance_slope', 'response_swap_auc', 'trial_noise',
           'target_swap_rate', 'learned')
MEASURES = COLUMNS[3:10]       # The numbers averaged over seeds in the tables.
SWAP_TARGETS = ('smooth', 'flat', 'swap_0.10', 'swap_0.05')   # Diffusion on swapping behaviour.


def _base_target(target: str) -> str:
  """'smooth, noise 0' -> 'smooth'."""
  return target.split(',')[0]


def target_swap_rate(config, num_displays: int = 512, num_samples: int = 64) -> float:
  """Share of the target behaviour's own responses nearest a non-target (the swap rate a
  network trained on it should show), on the task's displays."""
  key_displays, key_samples = jax.random.split(jax.random.key(12345))
  displays = task_lib.displays_from_config(key_displays, num_displays, config.task)
  responses = source.target_model_from_config(config).sample_responses(key_samples, displays,
                                                                       num_samples)
  return float(jnp.mean(decoding.swap_labels(responses, displays)))


def chain_curriculum(experiment, chain: str, noise: float | None = None):
  """A chain's curriculum with the experiment's common overrides (and a noise level)."""
  config = ml_collections.ConfigDict(experiment.chains[chain].to_dict())
  overrides = config.overrides.to_dict()
  for section, values in experiment.get('overrides', ml_collections.ConfigDict()).items():
    overrides.setdefault(section, {}).update(values.to_dict() if hasattr(values, 'to_dict')
                                             else values)
  if noise is not None:
    overrides.setdefault('model', {})['trial_noise'] = float(noise)
    overrides.setdefault('train', {})['ensemble_size'] = int(experiment.noise_sweep_ensemble)
    steps = experiment.get('noise_sweep_steps', {})
    stages = []
    for stage in config.stages:
      stage = dict(stage)
      if stage['name'] in steps:
        stage['overrides'] = dict(stage['overrides'])
        stage['overrides']['train'] = dict(stage['overrides'].get('train', {}),
                                           num_steps=int(steps[stage['name']]))
      stages.append(stage)
    config.stages = tuple(stages)
  config.overrides = overrides
  return config


def analyse_stage(cur, stage: str, chain_dir: str) -> list[dict]:
  """The paper protocol on every member of a trained stage, with the target's swap rate."""
  config = curriculum.stage_config(cur, stage, chain_dir)
  results = run_paper.analyse(config, curriculum.stage_workdir(chain_dir, stage))
  truth = target_swap_rate(config) if config.objective.name != 'task_optimal' else 0.0
  for r in results:
    r['target_swap_rate'] = truth
  return results


def preparatory_noise(config) -> float:
  """The state noise s.d. of the trial epochs: config.model.trial_noise, or sqrt(btilde_T)
  of the config's schedule when that is negative (the paper's)."""
  if config.model.trial_noise >= 0:
    return float(config.model.trial_noise)
  schedule = diffusion.schedule_from_config(config.diffusion)
  return float(np.sqrt(np.asarray(schedule.posterior_variances)[-1]))


def _row(cueing, target, numbers, noise: float) -> dict:
  row = dict(cueing=cueing, target=target, seed=numbers['seed'])
  row.update({k: numbers.get(k) for k in MEASURES})
  row.update(trial_noise=round(noise, 4), target_swap_rate=numbers.get('target_swap_rate'),
             learned=bool(numbers.get('learned', False)))
  return row


def pattern(target: str, cueing: str, rows: list[dict], details: list[dict]) -> dict:
  """Whether the paper's findings hold for one (cueing, target), as yes/no per finding.

  rise: the planes go from unaligned before the cue (mean |cos| < 0.5) to aligned after it (up
    by more than 0.3), and the sigmoid fits at least twice as well as the flat line. Expected
    for diffusion networks trained on swaps; not for task-optimal and no-swap networks.
  prediction (probe-cued only): the pre-cue alignment falls with cue distance (the slope's
    bootstrap interval below zero in the majority of seeds).
  late_swap: swap and correct trials separate in the response (AUC over its second half above
    the chance band) but not before the cue (the best pre-cue AUC inside the band).
  """
  mean = lambda k: float(np.nanmean([np.nan if r[k] is None else r[k] for r in rows]))
  rise = (mean('alignment_precue') < 0.5
          and mean('alignment_postcue') - mean('alignment_precue') > 0.3
          and mean('sigmoid_mse') < 0.5 * mean('flat_mse'))
  expected_rise = _base_target(target) in SWAP_TARGETS
  result = dict(rise=rise, expected_rise=expected_rise)
  if cueing == 'probe':
    below = [d['prediction']['slope_interval'][1] is not None
             and d['prediction']['slope_interval'][1] < 0 for d in details]
    result['prediction'] = sum(below) > len(below) / 2
  separable = [d.get('response_above_chance', False) for d in details]
  early = [d.get('precue_above_chance', False) for d in details]
  result['late_swap'] = (sum(separable) > len(separable) / 2) and not (sum(early) > len(early) / 2)
  return result


def _mean_sem(values) -> str:
  v = np.array([np.nan if x is None else x for x in values], float)
  v = v[np.isfinite(v)]
  if not v.size:
    return 'n/a'
  sem = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float('nan')
  return f'{v.mean():.3f} ± {sem:.3f}'


def markdown(groups: dict, title: str) -> str:
  """One line per (cueing, target): mean +- s.e.m. over the seeds that learned cue selection,
  how many did, and the paper's pattern read from those only (never from a network that does
  not do the task); a group with none that learned is shown but not interpreted."""
  yes = lambda b: 'yes' if b else 'no'
  lines = [f'## {title}', '',
           'Each finding is read only from the networks that learned cue selection (held-out '
           'swap rate within the criterion of the target\'s, `learned`); the numbers are their '
           'mean ± s.e.m.', '',
           '| cueing | target | noise | learned | target swap rate | ' + ' | '.join(MEASURES)
           + ' | rise at cue (expected) | pre-cue prediction | swap decided late |',
           '|' + ' --- |' * (len(MEASURES) + 8)]
  for (cueing, target), (rows, details) in groups.items():
    keep = [i for i, r in enumerate(rows) if r.get('learned')]
    truth = np.mean([d.get('target_swap_rate', np.nan) for d in details])
    noise = rows[0].get('trial_noise') if rows else None
    head = (f'| {cueing} | {target} | {noise if noise is not None else "n/a"} | '
            f'{len(keep)} of {len(rows)} | {truth:.3f} | ')
    if not keep:
      lines.append(head + ' | '.join('n/a' for _ in MEASURES)
                   + ' | not interpreted (no network learned) | | |')
      continue
    learned_rows = [rows[i] for i in keep]
    p = pattern(target, cueing, learned_rows, [details[i] for i in keep])
    lines.append(
        head + ' | '.join(_mean_sem([r[c] for r in learned_rows]) for c in MEASURES)
        + f" | {yes(p['rise'])} ({yes(p['expected_rise'])}) | "
        + (yes(p['prediction']) if 'prediction' in p else 'n/a')
        + f" | {yes(p['late_swap'])} |")
  return '\n'.join(lines) + '\n'


def _curves(details: list[dict], folder_of) -> tuple[np.ndarray, np.ndarray]:
  """Mean alignment time course of each seed, (seeds, T), read from its alignment.csv."""
  curves = []
  for d in details:
    text = (epath.Path(folder_of(d)) / 'alignment.csv').read_text()
    curves.append([float(r['mean']) if r['mean'] not in ('', 'nan') else np.nan
                   for r in csv.DictReader(io.StringIO(text, newline=''))])
  return np.array(curves, float)


def plot_experiment(groups: dict, folders: dict, path_alignment: str, path_prediction: str):
  """Alignment over time per target (one panel per cueing) and pre-cue alignment against cue
  distance per target (probe cueing), means over seeds with their s.e.m."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  # Only the networks that learned cue selection enter the figures, as they do the tables.
  groups = {key: ([r for r in rows if r.get('learned')],
                  [d for r, d in zip(rows, details) if r.get('learned')])
            for key, (rows, details) in groups.items()}
  groups = {key: value for key, value in groups.items() if value[0]}
  if not groups:
    for path in (path_alignment, path_prediction):
      fig, ax = plt.subplots(figsize=(5.5, 2.5))
      ax.text(0.5, 0.5, 'No network learned cue selection:\nnothing to interpret.',
              ha='center', va='center')
      ax.set_axis_off()
      files.save_figure(fig, path)
      plt.close(fig)
    return
  cueings = sorted({c for c, _ in groups}, key=lambda c: c != 'probe')
  fig, axes = plt.subplots(1, len(cueings), figsize=(6.5 * len(cueings), 4), squeeze=False)
  for ax, cueing in zip(axes[0], cueings):
    spans = None
    for i, ((c, target), (_, details)) in enumerate(groups.items()):
      if c != cueing:
        continue
      curves = _curves(details, lambda d, key=(c, target): folders[key][d['seed']])
      with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        mean = np.nanmean(curves, 0)
        sem = np.nanstd(curves, 0) / np.sqrt(max(curves.shape[0], 1))
      steps = np.arange(mean.size)
      ax.fill_between(steps, mean - sem, mean + sem, color=f'C{i}', alpha=0.2, lw=0)
      ax.plot(steps, mean, color=f'C{i}',
              label=f'{target} ({curves.shape[0]} that learned)')
      # Epochs shaded for the longest trial in the panel (a short-shape stage ends early).
      if spans is None or sum(b - a for a, b in details[0]['spans'].values()) > sum(
          b - a for a, b in spans.values()):
        spans = details[0]['spans']
    analysis_plots.shade_epochs(ax, spans or {})
    ax.set(xlabel='time step from the start of the delay',
           ylabel='|cos| between the cued-item planes', ylim=(0, 1.02))
    ax.set_title(f'{cueing}-cued networks that learned: plane alignment (mean ± s.e.m.)',
                 fontsize=9, pad=14)
    ax.legend(fontsize=7)
  fig.tight_layout()
  files.save_figure(fig, path_alignment)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(5.5, 4))
  for i, ((cueing, target), (_, details)) in enumerate(groups.items()):
    if cueing != 'probe':
      continue
    distances = np.degrees(details[0]['prediction']['distances'])
    means = np.array([d['prediction']['means'] for d in details], float)
    sem = means.std(0) / np.sqrt(means.shape[0])
    ax.errorbar(distances, means.mean(0), yerr=sem, color=f'C{i}', marker='o', capsize=2,
                label=f'{target} ({len(details)} that learned)')
  ax.set(xlabel='cue distance between the items (degrees)',
         ylabel='|cos| at the last pre-cue step', ylim=(0, 1.02))
  ax.set_title('The prediction: nearer cues, more aligned before the cue?', fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  files.save_figure(fig, path_prediction)
  plt.close(fig)


def _details(numbers: dict, folder: str) -> dict:
  """What the pattern checks and figures need beyond the CSV columns."""
  text = (epath.Path(folder) / 'swap_decision.csv').read_text()
  rows = list(csv.DictReader(io.StringIO(text, newline='')))
  num = lambda v: float(v) if v not in ('', 'nan', 'None') else np.nan
  auc = np.array([num(r['auc']) for r in rows])
  upper = np.array([num(r['chance_upper']) for r in rows])
  epochs = [r['epoch'] for r in rows]
  response = np.array([e == 'response' for e in epochs])
  late = response & (np.cumsum(response) > response.sum() // 2)
  precue = np.array([e == 'delay' for e in epochs])
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    return dict(seed=numbers['seed'], prediction=numbers['prediction'],
                target_swap_rate=numbers.get('target_swap_rate', np.nan),
                response_above_chance=bool(np.nanmean(auc[late]) > np.nanmean(upper[late])),
                precue_above_chance=bool(np.nanmax(auc[precue] - upper[precue]) > 0),
                swap_decided_from=numbers.get('swap_decided_from'))


def _analyse_targets(experiment, workdir: str, chains: dict, noise=None) -> tuple[dict, dict]:
  groups, folders = {}, {}
  for cueing, target, stage in experiment.targets:
    if cueing not in chains:
      continue
    cur, chain_dir = chains[cueing]
    if not curriculum.is_finished(curriculum.stage_config(cur, stage, chain_dir),
                                  curriculum.stage_workdir(chain_dir, stage)):
      logging.warning('%s-cued %s (stage %s): not trained (its chain stopped before it); not '
                      'analysed.', cueing, target, stage)
      continue
    results = analyse_stage(cur, stage, chain_dir)
    config = curriculum.stage_config(cur, stage, chain_dir)
    stage_dir = curriculum.stage_workdir(chain_dir, stage)
    size = config.train.ensemble_size
    member_dirs = {r['seed']: run_paper.member_folder(stage_dir, None if size == 1 else i)
                   for i, r in enumerate(results)}
    rows = [_row(cueing, target, r, preparatory_noise(config)) for r in results]
    details = [dict(_details(r, member_dirs[r['seed']]),
                    spans=_spans(config)) for r in results]
    groups[(cueing, target)] = (rows, details)
    folders[(cueing, target)] = member_dirs
  return groups, folders


def _spans(config) -> dict:
  epochs = task_lib.epochs_from_config(config)
  variant = config.analysis.get('paper_variant', 'authors')
  return run_paper.epoch_spans(epochs, pp.recipe(variant).skip_post_cue)


def _write(groups: dict, folders: dict, workdir: str, stem: str, title: str,
           extra_columns: dict | None = None) -> str:
  rows = [r for rows, _ in groups.values() for r in rows]
  columns = COLUMNS + tuple(extra_columns or {})
  text = io.StringIO(newline='')      # epath's cloud files take no newline=: built here.
  writer = csv.DictWriter(text, fieldnames=columns)
  writer.writeheader()
  for r in rows:
    writer.writerow(dict(r, **{k: fn(r) for k, fn in (extra_columns or {}).items()}))
  (epath.Path(workdir) / f'{stem}.csv').write_text(text.getvalue())
  table = markdown(groups, title)
  (epath.Path(workdir) / f'{stem}.md').write_text(table)
  return table


def _sweep_stages(experiment) -> tuple[str, ...]:
  """The stages of the noise sweep's chains that are analysed (the first is the smooth-swap
  stage; a control such as no_swaps may follow)."""
  stages = experiment.noise_sweep_stage
  return (stages,) if isinstance(stages, str) else tuple(stages)


def check_experiment(experiment, noise_sweep: bool = False) -> None:
  """Raises a ValueError naming the entry of experiment.targets (or experiment.noise_sweep_stage)
  whose chain or stage does not exist, before anything trains."""
  def stages_of(chain):
    return [s['name'] for s in experiment.chains[chain].stages]

  for i, (cueing, target, stage) in enumerate(experiment.targets):
    where = f'experiment.targets[{i}] = ({cueing!r}, {target!r}, {stage!r})'
    if cueing not in experiment.chains:
      raise ValueError(f'{where}: there is no chain {cueing!r} in experiment.chains '
                       f'({", ".join(experiment.chains)})')
    if stage not in stages_of(cueing):
      raise ValueError(f'{where}: chain {cueing!r} has no stage {stage!r} (its stages: '
                       f'{", ".join(stages_of(cueing))})')
  if noise_sweep:
    if 'probe' not in experiment.chains:
      raise ValueError('noise_sweep: the sweep retrains the chain \'probe\', which '
                       f'experiment.chains lacks ({", ".join(experiment.chains)})')
    missing = [s for s in _sweep_stages(experiment) if s not in stages_of('probe')]
    if missing:
      raise ValueError(f'experiment.noise_sweep_stage: chain \'probe\' has no stage '
                       f'{", ".join(map(repr, missing))} (its stages: '
                       f'{", ".join(stages_of("probe"))})')


def run(experiment, workdir: str, chains=None, noise_sweep: bool = False,
        train_only: bool = False) -> dict:
  """Trains and analyses (see the module docstring); returns {'main': table, 'noise': table}."""
  check_experiment(experiment, noise_sweep)
  root = epath.Path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  names = list(experiment.chains) if chains is None else list(chains)
  trained = {}
  for chain in names:
    cur = chain_curriculum(experiment, chain)
    chain_dir = os.fspath(root / chain)
    try:
      curriculum.run(cur, chain_dir)
    except curriculum.StageNotLearned as stop:
      # The stages before it stand; those after it are not trained and not analysed.
      logging.warning('Chain %s: %s', chain, stop)
    trained[chain] = (cur, chain_dir)
  sweep = {}
  if noise_sweep:
    for noise in experiment.noise_sweep:
      cur = chain_curriculum(experiment, 'probe', noise)
      chain_dir = os.fspath(root / f'noise_{noise:g}')
      try:
        curriculum.run(cur, chain_dir, stages=list(_sweep_stages(experiment)))
      except curriculum.StageNotLearned as stop:
        logging.warning('Noise %g: %s', noise, stop)
      sweep[noise] = (cur, chain_dir)
  if train_only:
    return {}
  tables = {}
  groups, folders = _analyse_targets(experiment, workdir, trained)
  if groups:
    tables['main'] = _write(groups, folders, workdir, 'paper_mechanisms',
                            'The paper\'s mechanism, measured its way')
    plot_experiment(groups, folders, os.fspath(root / 'paper_alignment.png'),
                    os.fspath(root / 'paper_precue_vs_distance.png'))
  if sweep:
    sweep_groups, sweep_folders = {}, {}
    for noise, chain in sweep.items():
      one = ml_collections.ConfigDict(dict(targets=[
          ('probe', f'{stage}, noise {noise:g}', stage) for stage in _sweep_stages(experiment)]))
      g, f = _analyse_targets(one, workdir, {'probe': chain})
      sweep_groups.update(g)
      sweep_folders.update(f)
    tables['noise'] = _write(sweep_groups, sweep_folders, workdir, 'noise_sweep',
                             'The probe chain by preparatory noise (model.trial_noise; '
                             'the main table is at sqrt(btilde_T), about 0.55)')
    plot_experiment(sweep_groups, sweep_folders, os.fspath(root / 'noise_sweep.png'),
                    os.fspath(root / 'noise_sweep_precue_vs_distance.png'))
  for table in tables.values():
    logging.info('\n%s', table)
  return tables
