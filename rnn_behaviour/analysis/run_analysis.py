"""`--mode=analyse`: record a trained network on a designed grid of displays and analyse it.

Writes `<workdir>/analysis/analysis.json` and figures (plane alignment, swap decoding over time,
cross-temporal decoding, PCA, fixed-point spectra). The folder appears whole or not at all
(`workdir.whole_folder`): read it with `read_numbers`, which treats an incomplete one as absent.
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
import numpy as np

from rnn_behaviour import checkpoints
from rnn_behaviour import files
from rnn_behaviour import run_record
from rnn_behaviour import task as task_lib
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.analysis import displays_grid
from rnn_behaviour.analysis import dynamics
from rnn_behaviour.analysis import report

ANALYSIS_DIR = 'analysis'
NUMBERS_FILE = 'analysis.json'
DISPLAYS_PER_CHUNK = 16


def analysis_dir(workdir) -> epath.Path:
  """Where `analyse` writes: <workdir>/analysis."""
  return epath.Path(workdir) / ANALYSIS_DIR


def read_numbers(workdir) -> dict | None:
  """The numbers of a finished analysis (`analysis.json`), or None when there is none: a folder
  without its completeness marker (interrupted, or older than the marker) counts as absent."""
  folder = analysis_dir(workdir)
  if not workdir_lib.is_complete(folder):
    return None
  return json.loads((folder / NUMBERS_FILE).read_text())


def delay_velocity(network, variables, task_config):
  """v(x) = x_next - x of the noise-free dynamics with inputs at their delay value."""
  dummy = task_lib.sample_displays(jax.random.key(0), 1, task_config.num_items)
  epoch_drives, _ = network.drives(variables, task_lib.epoch_inputs_from_config(dummy,
                                                                                task_config))
  delay_drive = epoch_drives[task_lib.EPOCH_NAMES.index('delay'), 0]
  return dynamics.velocity_of_map(lambda x: network.mean_step(variables, x, delay_drive))


def analyse(config, workdir: str) -> dict:
  """Runs every analysis on the trained network in `workdir`; returns the numbers."""
  if config.task.num_items != 2:
    raise ValueError(f'--mode=analyse needs two-item displays; config.task.num_items is '
                     f'{config.task.num_items}')
  c = config.analysis
  sample, state = checkpoints.load_trained(config, workdir)
  network = sample.network
  key_record, key_analyse = jax.random.split(jax.random.key(c.seed))
  # Workdirs saved before the knob existed analyse items at the grid's minimum separation.
  separation = float(c.get('cue_separation', np.pi / 4))
  displays = displays_grid.design_grid(c.num_bins, cue_features=(0.0, separation))
  # A chunk of displays at a time: its trajectories, not the whole grid's, bound the memory.
  responses, states = sample.chunked(state.variables, displays, key_record,
                                     c.samples_per_display, DISPLAYS_PER_CHUNK, record=True)
  logging.info('Recorded %s states on %d grid displays.', states.shape, displays.num_displays)
  numbers, figures = report.analyse(
      key_analyse, states, displays, responses, network.epochs, num_bins=c.num_bins,
      velocity=delay_velocity(network, state.variables, config.task),
      num_bootstrap=c.num_bootstrap, num_shuffles=c.num_shuffles,
      num_fixed_point_starts=c.num_fixed_point_starts)
  numbers['trained_steps'] = int(state.step)
  final = analysis_dir(workdir)
  with workdir_lib.whole_folder(final) as out:
    written = report.write_report(os.fspath(out), numbers, figures)
  paths = [os.fspath(final / epath.Path(p).name) for p in written]
  logging.info('Analysis written: %s; summary %s', ', '.join(paths), numbers['summary'])
  return numbers


def load_run_config(run_dir: str):
  """The resolved config a training run saved in its workdir."""
  return run_record.load_run_config(run_dir)


MECHANISM_COLUMNS = ('objective', 'seed') + report.SUMMARY_COLUMNS
DETAIL_COLUMNS = ('alignment_delay_end', 'alignment_response_onset', 'aligns_at_cue',
                  'swap_auc_peak', 'swap_decodable_from')


def _floats(values) -> np.ndarray:
  """A JSON list with None for missing values, as floats with NaN."""
  return np.asarray([np.nan if v is None else v for v in values], float)


def decodable_from(auc, chance_upper, epochs) -> str:
  """The earliest pre-response step from which the swap AUC stays above its chance band,
  as '<epoch>+<step within it>' ('never' if the last pre-response step is not above it)."""
  above = np.asarray(auc, float) > np.asarray(chance_upper, float)   # False where NaN.
  if not above.size or not above[-1]:
    return 'never'
  first = above.size - int(np.argmin(above[::-1])) if not above.all() else 0
  name = [n for n in task_lib.EPOCH_NAMES if epochs.start(n) <= first][-1]
  return f'{name}+{first - epochs.start(name)}'


def mechanism_details(numbers: dict, epochs) -> dict:
  """What the mechanisms table reads off one network's analysis numbers.

  alignment_delay_end / alignment_response_onset: the plane cosine on the last step before the
  cue and the last before the response. aligns_at_cue: the Panichello & Buschman pattern,
  orthogonal before the cue (< 0.5) and aligned after it (> 0.7), with the sigmoid preferred
  over a flat line and rising. swap_auc_peak: the best pre-response AUC;
  swap_decodable_from: see `decodable_from`.
  """
  cosine = _floats(numbers['alignment']['cosine'])
  fit = numbers['alignment']['fit']
  before, after = cosine[epochs.start('cue') - 1], cosine[epochs.trial_length - 1]
  params = fit.get('sigmoid_params') or {}
  rising = (params.get('high') or 0.0) > (params.get('low') or 0.0)
  swap = numbers['swap_decoding']
  auc, upper = _floats(swap['auc']), _floats(swap['chance_band'][1])
  return dict(alignment_delay_end=float(before), alignment_response_onset=float(after),
              aligns_at_cue=bool(before < 0.5 and after > 0.7 and fit.get('sigmoid_preferred')
                                 and rising),
              swap_auc_peak=float(np.nanmax(auc)) if np.isfinite(auc).any() else None,
              swap_decodable_from=decodable_from(auc, upper, epochs))


def plot_mechanisms(curves: dict, epochs, path: str):
  """Plane cosine and swap AUC over the trial, mean over seeds, one line per objective."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(12, 4))
  for i, (name, runs) in enumerate(curves.items()):
    for ax, key in zip(axes, ('cosine', 'auc')):
      values = np.array([r[key] for r in runs], float)
      with warnings.catch_warnings():  # No AUC where a network made no swaps.
        warnings.simplefilter('ignore', RuntimeWarning)
        mean = np.nanmean(values, axis=0)
      ax.plot(mean, color=f'C{i}', label=name)
  for ax, label in zip(axes, ('plane alignment |cos|', 'swap AUC (pre-response)')):
    for name in task_lib.EPOCH_NAMES:
      start = epochs.start(name)
      if start <= epochs.trial_length:
        ax.axvline(start, color='0.8', lw=0.8)
        ax.text(start + 0.3, 0.98, name, fontsize=7, va='top', rotation=90, color='0.4',
                transform=ax.get_xaxis_transform())
    ax.set_xlabel('time step')
    ax.set_ylabel(label)
  axes[1].axhline(0.5, color='k', ls=':', lw=0.8)
  axes[0].set_ylim(0, 1.05)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  files.save_figure(fig, path)
  plt.close(fig)


def analyse_comparison(workdir: str) -> list[dict]:
  """Analyses every run of an objectives comparison (`workdir/<objective>/seed_<s>/`) and writes
  `mechanisms.csv` and `mechanisms.md` into `workdir`. Runs analysed before are read back."""
  rows, details, curves, epochs = [], [], {}, None
  root = epath.Path(workdir)
  for objective in sorted(p.name for p in root.iterdir()):
    folder = root / objective
    if not folder.is_dir():
      continue
    for run in sorted(p.name for p in folder.iterdir()):
      run_dir = folder / run
      if not (run.startswith('seed_') and (run_dir / 'config.json').exists()):
        continue
      config = load_run_config(os.fspath(run_dir))
      numbers = read_numbers(run_dir)
      if numbers is None:      # Never analysed, or interrupted: analysed afresh.
        analyse(config, os.fspath(run_dir))
        numbers = read_numbers(run_dir)
      seed = int(run[len('seed_'):])
      rows.append(dict(objective=objective, seed=seed, **numbers['summary']))
      epochs = task_lib.epochs_from_config(config)
      details.append(dict(objective=objective, seed=seed, **mechanism_details(numbers, epochs)))
      curves.setdefault(objective, []).append(dict(
          cosine=_floats(numbers['alignment']['cosine']),
          auc=_floats(numbers['swap_decoding']['auc'])))
  if not rows:
    raise FileNotFoundError(f'no trained runs (<objective>/seed_<s>/) under {workdir}')
  for name, columns, table in (('mechanisms.csv', MECHANISM_COLUMNS, rows),
                               ('mechanisms_details.csv', ('objective', 'seed') + DETAIL_COLUMNS,
                                details)):
    text = io.StringIO(newline='')    # epath's cloud files take no newline=: built here.
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(table)
    (root / name).write_text(text.getvalue())
  fmt = lambda v: 'n/a' if v is None else (v if isinstance(v, str) else (
      'yes' if v is True else 'no' if v is False else f'{v:.3f}'))
  columns = MECHANISM_COLUMNS + DETAIL_COLUMNS
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + ' --- |' * len(columns)]
  lines += ['| ' + ' | '.join([r['objective'], str(r['seed'])]
                              + [fmt(r[c]) for c in report.SUMMARY_COLUMNS]
                              + [fmt(d[c]) for c in DETAIL_COLUMNS]) + ' |'
            for r, d in zip(rows, details)]
  (root / 'mechanisms.md').write_text('\n'.join(lines) + '\n')
  plot_mechanisms(curves, epochs, os.fspath(root / 'mechanisms.png'))
  return rows
