"""Curricula: chains of training stages, each started from an earlier stage's final parameters.

The paper trained every network as a curriculum (METHOD sec. 9), e.g. task-optimal -> diffusion
on no swaps -> a flat swap rate -> the cue-dependent swap function. A curriculum is a config
with

  base:       a config module under rnn_behaviour/configs (e.g. 'default');
  overrides:  nested overrides applied to every stage (sizes, noise, ensemble size, ...);
  stages:     a tuple of dicts {name, overrides, start_from}, in order; a stage starts from the
              final parameters of `start_from` (a stage name; '' means the previous stage,
              'scratch' a fresh initialisation; the first stage always starts from scratch).

Each stage is its own resumable workdir, `<workdir>/<name>`, whose config records where it
started (config.train.init_from and config.json's `initialised_from`). A finished stage (its
checkpoint at config.train.num_steps) is not rerun; an interrupted one resumes.
"""

from __future__ import annotations

import importlib
import os

from absl import logging
from etils import epath
import ml_collections

from rnn_behaviour import modes


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


def base_config(name: str) -> ml_collections.ConfigDict:
  """get_config() of a config module under rnn_behaviour/configs."""
  return importlib.import_module(f'rnn_behaviour.configs.{name}').get_config()


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


def is_finished(config, workdir: str) -> bool:
  """Whether `workdir` holds a checkpoint at config.train.num_steps."""
  folder = epath.Path(workdir) / 'checkpoints'
  if not folder.is_dir():
    return False
  steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
  return bool(steps) and max(steps) >= config.train.num_steps


def run(curriculum, workdir: str, stages=None) -> dict[str, str]:
  """Trains the stages in order (all, or the named ones and what they start from); returns
  {stage: workdir}. Finished stages are skipped; an interrupted stage resumes."""
  sources = stage_sources(curriculum)
  wanted = set(sources if stages is None else stages)
  for name in list(wanted):
    while sources.get(name):
      name = sources[name]
      wanted.add(name)
  dirs = {}
  for i, stage in enumerate(curriculum.stages):
    name = stage['name']
    if name not in wanted:
      continue
    config = stage_config(curriculum, name, workdir)
    dirs[name] = stage_workdir(workdir, name)
    if is_finished(config, dirs[name]):
      logging.info('Curriculum stage %d/%d %s: finished, not rerun.', i + 1,
                   len(curriculum.stages), name)
      continue
    logging.info('Curriculum stage %d/%d %s (from %s): %d steps in %s', i + 1,
                 len(curriculum.stages), name, sources[name] or 'scratch',
                 config.train.num_steps, dirs[name])
    modes.run(config, dirs[name], 'train')
  return dirs
