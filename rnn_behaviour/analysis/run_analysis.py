"""`--mode=analyse`: record a trained network on a designed grid of displays and analyse it.

Writes `<workdir>/analysis/analysis.json` and figures (plane alignment, swap decoding over time,
cross-temporal decoding, PCA, fixed-point spectra).
"""

from __future__ import annotations

import os

from absl import logging
import jax
import jax.numpy as jnp

from rnn_behaviour import task as task_lib
from rnn_behaviour.analysis import displays_grid
from rnn_behaviour.analysis import dynamics
from rnn_behaviour.analysis import report

ANALYSIS_DIR = 'analysis'


def record(network, variables, displays: task_lib.Displays, task_config, key,
           num_samples: int, onset: str, displays_per_chunk: int = 16):
  """Free-running trials with their states: (responses (K, S), states (T, K, S, n)).

  Runs a chunk of displays at a time so that a chunk's trajectories, not the whole grid's
  intermediates, bound the memory used.
  """

  @jax.jit
  def run(chunk, k):
    inputs = task_lib.epoch_inputs_from_config(chunk, task_config)
    return network.sample(variables, inputs, k, num_samples, onset=onset, record=True)

  responses, states = [], []
  for i, start in enumerate(range(0, displays.num_displays, displays_per_chunk)):
    r, s = run(displays[start:start + displays_per_chunk], jax.random.fold_in(key, i))
    responses.append(r)
    states.append(s)
  return jnp.concatenate(responses), jnp.concatenate(states, axis=1)


def delay_velocity(network, variables, task_config):
  """v(x) = x_next - x of the noise-free dynamics with inputs at their delay value."""
  dummy = task_lib.sample_displays(jax.random.key(0), 1, task_config.num_items)
  epoch_drives, _ = network.drives(variables, task_lib.epoch_inputs_from_config(dummy,
                                                                                task_config))
  delay_drive = epoch_drives[task_lib.EPOCH_NAMES.index('delay'), 0]
  return dynamics.velocity_of_map(lambda x: network.mean_step(variables, x, delay_drive))


def analyse(config, workdir: str) -> dict:
  """Runs every analysis on the trained network in `workdir`; returns the numbers."""
  from rnn_behaviour import train  # pylint: disable=g-import-not-at-top

  if config.task.num_items != 2:
    raise ValueError(f'--mode=analyse needs two-item displays; config.task.num_items is '
                     f'{config.task.num_items}')
  c = config.analysis
  network, state = train.load_trained(config, workdir)
  key_record, key_analyse = jax.random.split(jax.random.key(c.seed))
  displays = displays_grid.design_grid(c.num_bins)
  responses, states = record(network, state.variables, displays, config.task, key_record,
                             c.samples_per_display, config.diffusion.onset)
  logging.info('Recorded %s states on %d grid displays.', states.shape, displays.num_displays)
  numbers, figures = report.analyse(
      key_analyse, states, displays, responses, network.epochs, num_bins=c.num_bins,
      velocity=delay_velocity(network, state.variables, config.task),
      num_bootstrap=c.num_bootstrap, num_shuffles=c.num_shuffles,
      num_fixed_point_starts=c.num_fixed_point_starts)
  numbers['trained_steps'] = int(state.step)
  paths = report.write_report(os.path.join(workdir, ANALYSIS_DIR), numbers, figures)
  logging.info('Analysis written: %s; summary %s', ', '.join(paths), numbers['summary'])
  return numbers


def load_run_config(run_dir: str):
  """The resolved config a training run saved in its workdir."""
  import json  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: not a training workdir (no config.json)')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


MECHANISM_COLUMNS = ('objective', 'seed') + report.SUMMARY_COLUMNS


def analyse_comparison(workdir: str) -> list[dict]:
  """Analyses every run of an objectives comparison (`workdir/<objective>/seed_<s>/`) and writes
  `mechanisms.csv` and `mechanisms.md` into `workdir`. Runs analysed before are read back."""
  import csv  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  rows = []
  for objective in sorted(os.listdir(workdir)):
    folder = os.path.join(workdir, objective)
    if not os.path.isdir(folder):
      continue
    for run in sorted(os.listdir(folder)):
      run_dir = os.path.join(folder, run)
      if not (run.startswith('seed_') and os.path.exists(os.path.join(run_dir, 'config.json'))):
        continue
      result = os.path.join(run_dir, ANALYSIS_DIR, 'analysis.json')
      if os.path.exists(result):
        with open(result) as f:
          summary = json.load(f)['summary']
      else:
        summary = analyse(load_run_config(run_dir), run_dir)['summary']
      rows.append(dict(objective=objective, seed=int(run[len('seed_'):]), **summary))
  if not rows:
    raise FileNotFoundError(f'no trained runs (<objective>/seed_<s>/) under {workdir}')
  with open(os.path.join(workdir, 'mechanisms.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=MECHANISM_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  fmt = lambda v: 'n/a' if v is None else f'{v:.3f}'
  lines = ['| ' + ' | '.join(MECHANISM_COLUMNS) + ' |',
           '|' + ' --- |' * len(MECHANISM_COLUMNS)]
  lines += ['| ' + ' | '.join([r['objective'], str(r['seed'])]
                              + [fmt(r[c]) for c in report.SUMMARY_COLUMNS]) + ' |' for r in rows]
  with open(os.path.join(workdir, 'mechanisms.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return rows
