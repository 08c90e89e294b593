"""Whether a network has learned its stage: cue selection measured on held-out displays.

A finding about the mechanism of an error counts only from a network that does the task
(METHOD sec. 9): it selects the cued item, so its swap rate is near its target behaviour's.
This module measures that, the same way during training (a curriculum stage ends when it has
learned) and afterwards (an analysis of a network that did not learn is marked as such).

On K held-out displays (fixed by `criteria.seed`, so every check sees the same ones) the
network draws S free-running samples a display with its own sampler; the target behaviour draws
S responses a display on the same displays. A response is a swap when its nearest item is a
non-target (`circular.nearest_item`, the cued item winning ties). The criterion for one network:

  |swap_rate - target_swap_rate| <= tolerance                      (diffusion: the distribution)
  swap_rate <= target_swap_rate + tolerance                        (task-optimal: one-sided, a
                                                                    network that swaps less than
                                                                    its noisy target is fine)
  max_b |swap_rate_b - target_swap_rate_b| <= bin_tolerance        (when bin_tolerance > 0: the
                                                                    swap rate by cue distance,
                                                                    probe cueing only)

and at least `min_steps` trained. An ensemble stage ends when at least `ceil(members * E)`
members meet it at one check.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Callable

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import files
from rnn_behaviour import task as task_lib
from rnn_behaviour.behaviour import source

RECORD_FILE = 'criterion.json'
CURVE_CSV = 'criterion.csv'
CURVE_PNG = 'criterion.png'
CURVE_COLUMNS = ('step', 'member', 'swap_rate', 'target_swap_rate', 'max_bin_error', 'met')


def default_settings() -> ml_collections.ConfigDict:
  """How criteria are measured (a curriculum's `criteria` block overrides these)."""
  return ml_collections.ConfigDict(dict(
      seed=4321,                 # Held-out displays and samples (not the training stream).
      num_displays=64,
      samples_per_display=64,
      num_bins=4,                # Cue-distance bins for the per-bin check.
      check_every=250,           # Steps between checks during training.
      min_steps=250,
      tolerance=0.05,            # On the overall swap rate.
      bin_tolerance=0.0,         # On each cue-distance bin's swap rate (0: not checked).
      members=1.0,               # Fraction of ensemble members that must meet it.
  ))


def settings_for(stage_criterion: dict | None, common=None) -> ml_collections.ConfigDict:
  """The criterion of one stage: defaults <- the curriculum's common block <- the stage's."""
  settings = default_settings()
  for layer in (common, stage_criterion):
    for key, value in dict(layer or {}).items():
      if key not in settings:
        raise KeyError(f'criterion field {key!r} is not one of {sorted(settings.keys())}')
      settings[key] = value
  if settings.num_displays < 4 or settings.samples_per_display < 1:
    raise ValueError('criteria.num_displays must be >= 4 and criteria.samples_per_display >= 1')
  if not 0.0 < settings.members <= 1.0:
    raise ValueError(f'criteria.members must be in (0, 1], got {settings.members!r}')
  if settings.check_every < 1:
    raise ValueError(f'criteria.check_every must be >= 1, got {settings.check_every!r}')
  return settings


def swap_rates(responses, displays: task_lib.Displays, edges):
  """Overall and per-cue-distance-bin swap rate of (..., K, S) responses.

  Returns:
    overall (...,) and by_bin (..., B) (NaN where a bin holds no display); a display's
    non-targets are binned by their cue distance to the target (two items: one non-target).
  """
  responses = np.asarray(responses)
  nearest = circular.nearest_item(responses, np.asarray(displays.report)[:, None, :],
                                  preferred=np.asarray(displays.cued)[:, None])
  swaps = nearest != np.asarray(displays.cued)[:, None]                   # (..., K, S)
  overall = swaps.mean(axis=(-2, -1))
  # Nearest cue distance of any non-target, per display.
  distance = np.where(np.asarray(task_lib.nontarget_mask(displays)),
                      np.asarray(task_lib.cue_distances(displays)), np.inf).min(axis=-1)
  bins = circular.bin_index(distance, edges)
  per_display = swaps.mean(axis=-1)                                       # (..., K)
  by_bin = np.stack([per_display[..., bins == b].mean(axis=-1) if (bins == b).any()
                     else np.full(per_display.shape[:-1], np.nan)
                     for b in range(len(edges) - 1)], axis=-1)
  return overall, by_bin


def bin_edges(task_config, num_bins: int):
  return np.linspace(float(task_config.min_separation_cue), np.pi, num_bins + 1)


@dataclasses.dataclass(frozen=True)
class Target:
  """The target behaviour's swap rates on the held-out displays of a criterion."""
  displays: task_lib.Displays
  swap_rate: float
  by_bin: np.ndarray
  edges: np.ndarray


def target_on_heldout(config, settings, workdir: str | None = None) -> Target:
  """Held-out displays and the swap rates of the stage's target behaviour on them."""
  key_displays, key_samples = jax.random.split(jax.random.key(int(settings.seed)))
  displays = task_lib.displays_from_config(key_displays, int(settings.num_displays),
                                           config.task)
  model = source.target_model_from_config(config, workdir)
  responses = model.sample_responses(key_samples, displays, int(settings.samples_per_display))
  edges = bin_edges(config.task, int(settings.num_bins))
  overall, by_bin = swap_rates(responses, displays, edges)
  return Target(displays=displays, swap_rate=float(overall), by_bin=np.asarray(by_bin),
                edges=edges)


def make_checker(config, sample: Callable, num_members: int, settings, workdir=None
                 ) -> Callable:
  """check(variables, step) -> list of per-member records, for the seam's `sample`.

  `sample(variables, displays, key, num_samples) -> (K, S)` is the seam's sampler
  (train.build); for an ensemble the variables carry a leading member axis and the members
  sample in one vmapped call.
  """
  target = target_on_heldout(config, settings, workdir)
  one_sided = config.objective.name == 'task_optimal'
  use_bins = float(settings.bin_tolerance) > 0 and config.task.cueing == 'probe'
  num_samples = int(settings.samples_per_display)
  key = jax.random.fold_in(jax.random.key(int(settings.seed)), 1)

  def sample_one(variables):
    return sample(variables, target.displays, key, num_samples)

  sample_all = jax.jit(jax.vmap(sample_one) if num_members > 1 else sample_one)

  def check(variables, step: int) -> list[dict]:
    responses = np.asarray(sample_all(variables))
    if num_members == 1:
      responses = responses[None]
    overall, by_bin = swap_rates(responses, target.displays, target.edges)
    records = []
    for member in range(num_members):
      error = float(overall[member] - target.swap_rate)
      bin_error = float(np.nanmax(np.abs(by_bin[member] - target.by_bin)))
      met_rate = error <= settings.tolerance if one_sided else abs(error) <= settings.tolerance
      met = bool(met_rate and (not use_bins or bin_error <= settings.bin_tolerance)
                 and step >= int(settings.min_steps))
      records.append(dict(step=int(step), member=member, swap_rate=float(overall[member]),
                          target_swap_rate=target.swap_rate, max_bin_error=bin_error, met=met))
    return records

  return check


def required_members(settings, num_members: int) -> int:
  return max(1, math.ceil(float(settings.members) * num_members - 1e-9))


def stage_met(records: list[dict], settings, num_members: int) -> bool:
  """Whether one check's records end the stage."""
  return sum(r['met'] for r in records) >= required_members(settings, num_members)


def read_record(workdir: str) -> dict | None:
  path = epath.Path(workdir) / RECORD_FILE
  if not path.exists():
    return None
  return json.loads(path.read_text())


def write_record(workdir: str, record: dict) -> None:
  path = epath.Path(workdir) / RECORD_FILE
  tmp = path.parent / (path.name + '.tmp')
  tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
  tmp.rename(path)


def read_curve(workdir: str) -> list[dict]:
  path = epath.Path(workdir) / CURVE_CSV
  if not path.exists():
    return []
  lines = path.read_text().strip().splitlines()
  rows = []
  for line in lines[1:]:
    values = line.split(',')
    if len(values) != len(CURVE_COLUMNS):
      continue   # A line cut off by a kill.
    row = dict(zip(CURVE_COLUMNS, values))
    rows.append(dict(step=int(row['step']), member=int(row['member']),
                     swap_rate=float(row['swap_rate']),
                     target_swap_rate=float(row['target_swap_rate']),
                     max_bin_error=float(row['max_bin_error']), met=row['met'] == 'True'))
  return rows


def write_curve(workdir: str, rows: list[dict], tolerance: float | None = None) -> None:
  """The learning curve as CSV (rows sorted by step and member) and a figure."""
  rows = sorted(rows, key=lambda r: (r['step'], r['member']))
  files.write_csv(epath.Path(workdir) / CURVE_CSV, CURVE_COLUMNS,
                  [dict(r, met=bool(r['met'])) for r in rows])
  try:
    plot_curve(rows, epath.Path(workdir) / CURVE_PNG, tolerance)
  except Exception as error:  # pylint: disable=broad-except
    logging.warning('criterion figure not written: %s', error)


def plot_curve(rows: list[dict], path, tolerance: float | None = None) -> None:
  """Swap rate at each check, one line per member, against the target's rate."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5.5, 3.4))
  members = sorted({r['member'] for r in rows})
  for m in members:
    mine = [r for r in rows if r['member'] == m]
    ax.plot([r['step'] for r in mine], [r['swap_rate'] for r in mine], marker='o', ms=3,
            label=f'member {m}')
    met = [r for r in mine if r['met']]
    ax.scatter([r['step'] for r in met], [r['swap_rate'] for r in met], s=30,
               facecolors='none', edgecolors='k')
  if rows:
    truth = rows[0]['target_swap_rate']
    ax.axhline(truth, color='k', ls='--', lw=1, label="target's swap rate")
    if tolerance:
      ax.axhspan(max(truth - tolerance, 0), truth + tolerance, color='k', alpha=0.08,
                 label='criterion band')
  ax.set_xlabel('training step')
  ax.set_ylabel('held-out swap rate')
  ax.set_title('Cue selection during training (circled: criterion met)', fontsize=9)
  ax.set_ylim(0, max(0.55, max([r['swap_rate'] for r in rows] + [0.1])))
  ax.legend(fontsize=7)
  fig.tight_layout()
  files.save_figure(fig, path)
  plt.close(fig)


@dataclasses.dataclass
class Monitor:
  """The training loop's hook: every `every` steps, `__call__(step, state)` checks the
  criterion, appends the learning curve and returns True when the stage has learned."""
  every: int
  check: Callable
  settings: ml_collections.ConfigDict
  num_members: int
  workdir: str
  chief: bool = True
  rows: list = dataclasses.field(default_factory=list)
  met_at: int | None = None

  def __call__(self, step: int, variables) -> bool:
    records = self.check(variables, step)
    self.rows = [r for r in self.rows if r['step'] < step] + records
    if self.chief:
      write_curve(self.workdir, self.rows, float(self.settings.tolerance))
    met = stage_met(records, self.settings, self.num_members)
    logging.info('criterion at step %d: swap rate %s (target %.3f)%s', step,
                 ' / '.join(f"{r['swap_rate']:.3f}" for r in records),
                 records[0]['target_swap_rate'],
                 (', max bin error ' + ' / '.join(f"{r['max_bin_error']:.3f}" for r in records))
                 if self.settings.bin_tolerance > 0 else '')
    if met:
      self.met_at = step
    return met


def evaluate_once(config, workdir: str, settings, state_variables, sample: Callable,
                  num_members: int, step: int) -> list[dict]:
  """The criterion's records for trained variables, outside training."""
  return make_checker(config, sample, num_members, settings, workdir)(state_variables, step)
