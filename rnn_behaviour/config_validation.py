"""Checks a run's config before anything compiles; every error names the offending field."""

from __future__ import annotations

import os

import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import objectives
from rnn_behaviour import parallel
from rnn_behaviour import rnn
from rnn_behaviour import task
from rnn_behaviour.behaviour import parametric
from rnn_behaviour.behaviour import source
from rnn_behaviour.configs import choices


class ConfigError(ValueError):
  """A config value is invalid."""


def _get(config, field: str):
  node = config
  for part in field.split('.'):
    if part not in node:
      raise ConfigError(f'config.{field} is missing')
    node = node[part]
  return node


def _check(config, field: str, ok, requirement: str):
  value = _get(config, field)
  if not ok(value):
    raise ConfigError(f'config.{field} must be {requirement}, got {value!r}')


def _positive_int(v):
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0


def _nonnegative_int(v):
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0


def _positive(v):
  return isinstance(v, (int, float, np.number)) and np.isfinite(v) and v > 0


def _nonnegative(v):
  return isinstance(v, (int, float, np.number)) and np.isfinite(v) and v >= 0


def _finite(v):
  return isinstance(v, (int, float, np.number)) and np.isfinite(v)


def _one_of(options):
  return lambda v: v in options


def _check_plane_protocol(c) -> None:
  """The paper protocol's plane-alignment variant and its pairs (analysis/paper_protocol.py)."""
  a = c.analysis
  _check(c, 'analysis.pair_rotations', _nonnegative_int,
         "a non-negative integer (0: the variant's own)")
  _check(c, 'analysis.report_values', lambda v: _nonnegative_int(v) and (v == 0 or v >= 4),
         "0 (the variant's own) or an integer >= 4")
  if 'paper_variant' in a:
    _check(c, 'analysis.paper_variant', _one_of(choices.PAPER_VARIANTS),
           f'one of {choices.PAPER_VARIANTS}')
  if 'pair_grid' in a:
    _check(c, 'analysis.pair_grid', lambda v: _positive_int(v) and v >= 4, 'an integer >= 4')
  if 'index_samples_per_display' in a:
    _check(c, 'analysis.index_samples_per_display', _nonnegative_int,
           "a non-negative integer (0: the variant's own)")
  if a.get('paper_variant', 'authors') != 'authors' or c.task.cueing == 'index':
    return
  grid_field = 'task.cue_grid' if c.task.cue_grid else 'analysis.pair_grid'
  grid = _get(c, grid_field) if c.task.cue_grid or 'pair_grid' in a else 24
  if a.pair_rotations > grid:
    raise ConfigError(f'config.analysis.pair_rotations={a.pair_rotations} exceeds the '
                      f'{grid} grid positions of config.{grid_field}')
  if not circular.grid_separations(grid, c.task.min_separation_cue).size:
    raise ConfigError(f'config.{grid_field}={grid} has no cue separation from '
                      f'config.task.min_separation_cue={c.task.min_separation_cue:.3f} to below '
                      "pi for the authors' plane-alignment pairs")


def _check_model_options(c) -> None:
  """The options of the model, its inputs and its losses that the authors' training sets
  (configs/authors.py); each is optional, so configs written before they existed still load."""
  checks = (
      ('task.cue_input', task.CUE_INPUTS), ('model.soma', rnn.SOMAS),
      ('model.time_levels', rnn.TIME_LEVELS), ('model.input_projection', rnn.INPUT_PROJECTIONS),
      ('model.initial_state', rnn.INITIAL_STATES),
      ('diffusion.onset_penalty', objectives.ONSET_PENALTIES),
      ('objective.state_penalty', objectives.STATE_PENALTIES))
  present = lambda field: field.split('.')[1] in c[field.split('.')[0]]
  for field, options in checks:
    if present(field):
      _check(c, field, _one_of(options), f'one of {options}')
  if present('model.feature_projection_size'):
    _check(c, 'model.feature_projection_size', _positive_int, 'a positive integer')
  if present('objective.denoise_scale'):
    _check(c, 'objective.denoise_scale', _positive, 'positive')
  probe_only = (('task.cue_input', 'conjunctive'), ('model.input_projection', 'factorised'))
  for field, value in probe_only:
    if present(field) and _get(c, field) == value and c.task.cueing != 'probe':
      raise ConfigError(f"config.{field}={value!r} needs config.task.cueing='probe' (a cue "
                        f'feature in the conjunctive code), got {c.task.cueing!r}')
  for field, default in (('model.soma', 'linear'), ('model.time_levels', 'leaves')):
    if present(field) and _get(c, field) != default and c.model.cell != 'dendritic':
      raise ConfigError(f"config.{field}={_get(c, field)!r} is an option of the dendritic cell; "
                        f"config.model.cell is {c.model.cell!r} (use {default!r})")


def validate(config) -> None:
  """Raises ConfigError naming the first invalid field of a training/evaluation config."""
  for check in (_check_sizes, _check_task, _check_network, _check_behaviour, _check_analysis,
                _check_training, _check_layout):
    check(config)


def _check_sizes(c) -> None:
  """Positive and non-negative integer sizes."""
  for field in ('task.num_items', 'task.num_tuning', 'task.epochs.stimulus', 'task.epochs.cue',
                'model.num_units', 'model.num_branches', 'model.num_subbranches',
                'model.time_embedding_size', 'diffusion.num_steps', 'train.num_steps',
                'train.displays_per_batch', 'train.samples_per_display', 'train.log_every',
                'train.checkpoint_every', 'train.keep_checkpoints', 'eval.num_displays',
                'eval.samples_per_display', 'eval.num_cue_bins', 'eval.bns_samples_per_display'):
    _check(c, field, _positive_int, 'a positive integer')
  for field in ('task.cue_grid', 'task.report_grid', 'task.epochs.delay',
                'task.epochs.post_cue', 'train.warmup_steps', 'train.displays_per_chunk',
                'eval.num_plot_displays', 'eval.bns_svi_steps'):
    _check(c, field, _nonnegative_int, 'a non-negative integer')


def _check_task(c) -> None:
  """The task: cueing, tuning, and room on the circle for its items."""
  _check(c, 'task.cueing', _one_of(task.CUEINGS), f'one of {task.CUEINGS}')
  _check(c, 'task.tuning_concentration', _positive, 'positive')
  _check(c, 'task.min_separation_cue', _nonnegative, 'non-negative (radians)')
  _check(c, 'task.min_separation_report', _nonnegative, 'non-negative (radians)')
  for grid_field, sep_field in (('task.cue_grid', 'task.min_separation_cue'),
                                ('task.report_grid', 'task.min_separation_report')):
    grid, sep, n = _get(c, grid_field), _get(c, sep_field), c.task.num_items
    if grid:
      gap = max(int(np.ceil(sep / (2 * np.pi / grid) - 1e-9)), 1)
      if grid - n * (gap - 1) < n:
        raise ConfigError(f'config.{grid_field}={grid} cannot hold {n} items '
                          f'{sep:.3f} rad apart (config.{sep_field})')
    elif n * sep >= 2 * np.pi:
      raise ConfigError(f'config.{sep_field}={sep:.3f} is too large for {n} items on a circle')


def _check_network(c) -> None:
  """The network, the diffusion and the objective."""
  _check(c, 'model.cell', _one_of(rnn.CELLS), f'one of {rnn.CELLS}')
  _check(c, 'model.nonlinearity', _one_of(tuple(rnn.NONLINEARITIES)),
         f'one of {tuple(rnn.NONLINEARITIES)}')
  _check(c, 'model.alpha', lambda v: _positive(v) and v <= 1, 'in (0, 1]')
  _check(c, 'model.time_embedding_size', lambda v: v % 2 == 0, 'even')
  _check(c, 'model.trial_noise', _finite, 'finite (negative: sqrt(btilde_T))')
  _check(c, 'diffusion.beta_min', lambda v: _finite(v) and 0 < v < 1, 'in (0, 1)')
  _check(c, 'diffusion.beta_max', lambda v: _finite(v) and 0 < v < 1, 'in (0, 1)')
  _check(c, 'diffusion.beta_max', lambda v: v >= c.diffusion.beta_min,
         f'>= config.diffusion.beta_min ({c.diffusion.beta_min})')
  _check(c, 'diffusion.radius', _positive, 'positive')
  _check(c, 'diffusion.onset', _one_of(rnn.ONSETS), f'one of {rnn.ONSETS}')
  _check(c, 'diffusion.onset_weight', _nonnegative, 'non-negative')
  _check(c, 'diffusion.response_noise', _one_of(rnn.RESPONSE_NOISES),
         f'one of {rnn.RESPONSE_NOISES}')
  _check_model_options(c)
  _check(c, 'objective.name', _one_of(objectives.OBJECTIVES), f'one of {objectives.OBJECTIVES}')
  _check(c, 'objective.state_weight', _nonnegative, 'non-negative')


def _check_behaviour(c) -> None:
  """The target behaviour, the learning rate and the evaluation kernel."""
  _check(c, 'behaviour.source', _one_of(source.SOURCES), f'one of {source.SOURCES}')
  _check(c, 'behaviour.signature', _one_of(source.SIGNATURES), f'one of {source.SIGNATURES}')
  _check(c, 'behaviour.swap_kind', _one_of(parametric.SWAP_KINDS),
         f'one of {parametric.SWAP_KINDS}')
  _check(c, 'behaviour.swap_width', _positive, 'positive')
  _check(c, 'behaviour.swap_bias', _finite, 'finite')
  _check(c, 'behaviour.guess_logit', _finite, 'finite')
  _check(c, 'behaviour.kappa', _positive, 'positive')
  _check(c, 'train.learning_rate', _positive, 'positive')
  _check(c, 'eval.kde_concentration', _positive, 'positive')


def _check_analysis(c) -> None:
  """The analyses (either protocol)."""
  if 'analysis' in c:
    for field in ('analysis.samples_per_display', 'analysis.num_bootstrap',
                  'analysis.num_shuffles', 'analysis.num_fixed_point_starts'):
      _check(c, field, _positive_int, 'a positive integer')
    _check(c, 'analysis.num_bins', lambda v: _positive_int(v) and v >= 2, 'an integer >= 2')
  if 'analysis' in c and 'protocol' in c.analysis:
    _check(c, 'analysis.protocol', _one_of(choices.ANALYSIS_PROTOCOLS),
           f'one of {choices.ANALYSIS_PROTOCOLS}')
    _check(c, 'analysis.swap_displays', _positive_int, 'a positive integer')
    _check(c, 'analysis.reported_bins', lambda v: _positive_int(v) and v >= 3, 'an integer >= 3')
    _check(c, 'analysis.pair_distance_step', _positive, 'positive (radians)')
    _check_plane_protocol(c)
  if 'analysis' in c and 'cue_separation' in c.analysis:
    _check(c, 'analysis.cue_separation',
           lambda v: _finite(v) and c.task.min_separation_cue - 1e-6 <= v <= np.pi + 1e-6,
           f'in [config.task.min_separation_cue ({c.task.min_separation_cue:.3f}), pi]')


def _check_training(c) -> None:
  """The optimiser, the schedule, divergence and warm starts."""
  _check(c, 'train.grad_clip', _nonnegative, 'non-negative (0 disables clipping)')
  if 'schedule' in c.train:
    _check(c, 'train.schedule', lambda v: v in ('cosine', 'constant'), "'cosine' or 'constant'")
  if 'init_optimizer' in c.train:
    _check(c, 'train.init_optimizer', lambda v: isinstance(v, bool), 'True or False')
  if 'ensemble_size' in c.train:
    _check(c, 'train.ensemble_size', _positive_int, 'a positive integer')
  if 'decay_steps' in c.train:
    _check(c, 'train.decay_steps', _nonnegative_int, 'a non-negative integer (0: num_steps)')
    _check(c, 'train.decay_steps', lambda v: v == 0 or v > c.train.warmup_steps,
           f'0 or > config.train.warmup_steps ({c.train.warmup_steps})')
  if 'divergence_factor' in c.train:
    _check(c, 'train.divergence_factor', _nonnegative, 'non-negative (0 disables the test)')
  for field in ('train.divergence_patience', 'train.divergence_window'):
    if field.split('.')[1] in c.train:
      _check(c, field, _positive_int, 'a positive integer')
  if 'init_from' in c.train:
    _check(c, 'train.init_from', lambda v: isinstance(v, str), "a workdir path or ''")
    if c.train.init_from and not os.path.isdir(c.train.init_from):
      raise ConfigError(f'config.train.init_from={c.train.init_from!r} is not a directory '
                        '(the workdir of a finished run)')


def _check_layout(c) -> None:
  """The device layout, the displays and their chunks."""
  parallel.validate(c)
  if 'parallel' in c:
    # Divisibility by a fixed device count; with num_devices=0 (all) it is checked on the mesh.
    num_devices = c.parallel.get('num_devices', 1)
    if num_devices:
      parallel.mesh_shape(c, num_devices)
  if c.task.num_items < 2:
    raise ConfigError(f'config.task.num_items must be >= 2 (the task, its swap errors and their '
                      f'judgement need a non-target), got {c.task.num_items}')
  chunk = c.train.displays_per_chunk
  if chunk and c.train.displays_per_batch % chunk:
    raise ConfigError(f'config.train.displays_per_chunk={chunk} must divide '
                      f'config.train.displays_per_batch={c.train.displays_per_batch}')
