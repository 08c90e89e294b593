"""Curricula: chains of training stages, each started from an earlier stage's final parameters.

The paper trained every network as a curriculum (METHOD sec. 9), e.g. task-optimal -> diffusion
on no swaps -> a flat swap rate -> the cue-dependent swap function. A curriculum is a config
with

  base:       a config module under rnn_behaviour/configs (e.g. 'default'), or a whole config
              (a ConfigDict: the report's chains start from the run's own config);
  overrides:  nested overrides applied to every stage (sizes, noise, ensemble size, ...);
  stages:     a tuple of dicts {name, overrides, start_from}, in order; a stage starts from the
              final parameters of `start_from` (a stage name; '' means the previous stage,
              'scratch' a fresh initialisation; the first stage always starts from scratch).

Each stage is its own resumable workdir, `<workdir>/<name>`, whose config records where it
started (config.train.init_from and config.json's `initialised_from`). A finished stage is not
rerun; an interrupted one resumes.

Stages that end when learned. A stage dict may hold `criterion` (fields of
`criteria.default_settings`, over the curriculum's common `criteria` block): every
`check_every` steps the training loop measures cue selection on held-out displays
(`rnn_behaviour/criteria.py`) and the stage ends as soon as its criterion is met (after at least
`min_steps`); config.train.num_steps is then the stage's budget, not its length. The stage's
workdir records the outcome in `criterion.json` (met or not, at which step, per member) and its
learning curve in `criterion.csv` / `criterion.png`. A stage starts only from one that met its
criterion: otherwise the chain stops with a message naming the stage and its last figures,
unless the curriculum sets `continue_unlearned=True`, which goes on and marks every later
stage's record with `after_unlearned` (the stages upstream that did not learn).
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from absl import logging
from etils import epath
import ml_collections

from rnn_behaviour import checkpoints
from rnn_behaviour import config_validation
from rnn_behaviour import criteria
from rnn_behaviour import train


def merge_overrides(config, overrides) -> None:
  """Writes a nested dict of overrides into a config, in place (keys must exist)."""
  for key, value in overrides.items():
    if key not in config:
      raise KeyError(f'override {key!r} is not a field of the config (fields: '
                     f'{sorted(config.keys())})')
    if hasattr(value, 'items') and isinstance(config[key], ml_collections.ConfigDict):
      merge_overrides(config[key], value)
    else:
      config[key] = value


def base_config(base) -> ml_collections.ConfigDict:
  """get_config() of a config module under rnn_behaviour/configs, or a fresh copy of a config
  given whole."""
  if isinstance(base, ml_collections.ConfigDict):
    return ml_collections.ConfigDict(base.to_dict())
  return importlib.import_module(f'rnn_behaviour.configs.{base}').get_config()


def stage_workdir(workdir: str, name: str) -> str:
  return os.fspath(epath.Path(workdir) / name)


def stage_sources(curriculum) -> dict[str, str | None]:
  """{stage: the stage it starts from (None: scratch)}; fails on unknown or later sources."""
  sources, seen = {}, []
  for i, stage in enumerate(curriculum.stages):
    name, start = stage['name'], stage.get('start_from', '')
    if name in seen:
      raise ValueError(f'curriculum stage name {name!r} is used twice')
    if i == 0 or start == 'scratch':
      sources[name] = None
    elif start == '':
      sources[name] = seen[-1]
    elif start in seen:
      sources[name] = start
    else:
      raise ValueError(f'curriculum stage {name!r}: start_from={start!r} is not an earlier stage '
                       f'({seen})')
    seen.append(name)
  return sources


def stage_config(curriculum, name: str, workdir: str) -> ml_collections.ConfigDict:
  """The full training config of one stage."""
  stages = {s['name']: s for s in curriculum.stages}
  config = base_config(curriculum.base)
  merge_overrides(config, curriculum.get('overrides', {}))
  merge_overrides(config, stages[name].get('overrides', {}))
  source = stage_sources(curriculum)[name]
  config.train.init_from = stage_workdir(workdir, source) if source else ''
  return config


class StageNotLearned(RuntimeError):
  """A curriculum stage used its budget without meeting its criterion; the chain stopped."""


def is_finished(config, workdir: str) -> bool:
  """Whether a stage has ended: its criterion record says so, or (a stage without criterion)
  it holds a checkpoint at config.train.num_steps."""
  record = criteria.read_record(workdir)
  if record is not None and record.get('ended'):
    # Not met within its budget: a raised budget (config.train.num_steps) resumes it.
    return record['met'] or record['budget'] >= config.train.num_steps
  steps = checkpoints.all_steps(workdir)
  return bool(steps) and max(steps) >= config.train.num_steps


def stage_criterion(curriculum, name: str):
  """The stage's criterion settings, or None when it has no criterion."""
  stage = {s['name']: s for s in curriculum.stages}[name]
  if stage.get('criterion') is None:
    return None
  return criteria.settings_for(stage['criterion'], curriculum.get('criteria', None))


def _train_with_criterion(config, workdir: str, settings, upstream_unlearned) -> dict:
  """Trains one stage until its criterion is met or its budget is spent; returns its record."""
  built = train.build(config, workdir)
  num_members = train.ensemble_size(config)
  monitor = criteria.Monitor(
      every=int(settings.check_every),
      check=criteria.make_checker(config, built.sample, num_members, settings, workdir),
      settings=settings, num_members=num_members, workdir=workdir,
      rows=criteria.read_curve(workdir))
  already = checkpoints.all_steps(workdir)
  if already and max(already) >= config.train.num_steps:
    # Trained to its budget before it had a criterion (or killed before the record was
    # written): judge its final network once.
    _, state = train.load_trained(config, workdir)
    monitor(int(np.max(np.asarray(state.step))), state.variables)
  else:
    train.train(config, workdir, monitor=monitor)
  last_step = max(r['step'] for r in monitor.rows)
  last = [r for r in monitor.rows if r['step'] == last_step]
  record = dict(
      ended=True, met=monitor.met_at is not None, met_step=monitor.met_at,
      last_step=last_step, budget=int(config.train.num_steps),
      required_members=criteria.required_members(settings, num_members),
      members=[dict(member=r['member'], seed=int(config.seed) + r['member'],
                    learned=bool(r['met']), swap_rate=r['swap_rate'],
                    target_swap_rate=r['target_swap_rate'], max_bin_error=r['max_bin_error'])
               for r in last],
      settings=settings.to_dict(), after_unlearned=list(upstream_unlearned))
  criteria.write_record(workdir, record)
  return record


def _describe(name: str, record: dict) -> str:
  members = ', '.join(f"member {m['member']} swap rate {m['swap_rate']:.3f}"
                      + (f" (max bin error {m['max_bin_error']:.3f})"
                         if record['settings'].get('bin_tolerance') else '')
                      for m in record['members'])
  target = record['members'][0]['target_swap_rate'] if record['members'] else float('nan')
  return (f"stage {name!r} {'met' if record['met'] else 'did not meet'} its criterion "
          f"(at step {record['met_step'] if record['met'] else record['last_step']} of "
          f"{record['budget']}; target swap rate {target:.3f}, tolerance "
          f"{record['settings']['tolerance']}; {members})")


def run(curriculum, workdir: str, stages=None) -> dict[str, str]:
  """Trains the stages in order (all, or the named ones and what they start from); returns
  {stage: workdir}. Finished stages are skipped; an interrupted stage resumes.

  Raises:
    StageNotLearned: a stage with a criterion ended without meeting it and the curriculum does
      not set continue_unlearned (the stages before it are trained and kept).
  """
  sources = stage_sources(curriculum)
  wanted = set(sources if stages is None else stages)
  for name in list(wanted):
    while sources.get(name):
      name = sources[name]
      wanted.add(name)
  go_on = bool(curriculum.get('continue_unlearned', False))
  dirs, unlearned = {}, {}
  for i, stage in enumerate(curriculum.stages):
    name = stage['name']
    if name not in wanted:
      continue
    config = stage_config(curriculum, name, workdir)
    dirs[name] = stage_workdir(workdir, name)
    settings = stage_criterion(curriculum, name)
    upstream = []
    source = sources[name]
    while source:
      upstream += unlearned.get(source, [])
      source = sources[source]
    upstream = sorted(set(upstream))
    if is_finished(config, dirs[name]) and (settings is None
                                            or criteria.read_record(dirs[name]) is not None):
      logging.info('Curriculum stage %d/%d %s: finished, not rerun.', i + 1,
                   len(curriculum.stages), name)
      record = criteria.read_record(dirs[name])
    else:
      logging.info('Curriculum stage %d/%d %s (from %s): %s %d steps in %s', i + 1,
                   len(curriculum.stages), name, sources[name] or 'scratch',
                   'at most' if settings is not None else '', config.train.num_steps,
                   dirs[name])
      if settings is None:
        config_validation.validate(config)
        train.train(config, dirs[name])
        record = None
      else:
        record = _train_with_criterion(config, dirs[name], settings, upstream)
    if record is not None:
      logging.info('Curriculum: %s.', _describe(name, record))
      if not record['met']:
        unlearned[name] = [name]
        if not go_on:
          raise StageNotLearned(
              f'{_describe(name, record)}; the chain stops here (its learning curve: '
              f'{epath.Path(dirs[name]) / criteria.CURVE_CSV}). Raise the stage\'s budget '
              '(train.num_steps; with the cosine schedule pin train.decay_steps to the old '
              'budget) and rerun to resume it, or set continue_unlearned=True to go '
              'on; later stages are then marked as started from a network that did not learn.')
    unlearned[name] = sorted(set(unlearned.get(name, []) + upstream))
  return dirs
