"""Warm starts: a run's first state taken from another run's final checkpoint
(config.train.init_from, config.train.init_member, config.train.init_optimizer)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnn_behaviour import checkpoints
from rnn_behaviour import run_record
from rnn_behaviour import train_step

SHAPE_SECTIONS = ('model', 'task')   # Config sections that fix the shapes in a checkpoint.


def _shape_differences(expected, found) -> list[str]:
  """'path: found -> expected' for every leaf whose shape differs (or is missing)."""
  flat_expected = {jax.tree_util.keystr(p): np.shape(v)
                   for p, v in jax.tree_util.tree_leaves_with_path(expected)}
  flat_found = {jax.tree_util.keystr(p): np.shape(v)
                for p, v in jax.tree_util.tree_leaves_with_path(found)}
  return [f'{path}: {flat_found.get(path, "missing")} -> {flat_expected.get(path, "missing")}'
          for path in sorted(set(flat_expected) | set(flat_found))
          if flat_expected.get(path) != flat_found.get(path)]


def initialise_from(config, state: train_step.TrainState, tx: optax.GradientTransformation
                    ) -> tuple[train_step.TrainState, dict]:
  """`state` with parameters and readout taken from the run in config.train.init_from.

  The source's final checkpoint provides the parameters and the fixed readout (the network
  learned with that readout); the optimiser starts fresh (or, with config.train.init_optimizer,
  continues from the source's Adam state, as the authors' stages did) and the step at 0. Shapes
  must match (same network, task inputs and ensemble size), else a ValueError names the
  differing parameters and config fields. Everything that does not fix a shape may change
  between source and run: the objective, the target behaviour, the epochs' lengths, T and the
  beta schedule (the response's time drive is an embedding of the step index t, the same
  function whatever T), the noise levels and the optimiser.

  Returns the new state and a record of the source for config.json.
  """
  source_dir = os.fspath(checkpoints.absolute_path(config.train.init_from))
  source_config = run_record.load_run_config(source_dir)
  fields = []
  for section in SHAPE_SECTIONS:
    for key in ('num_units', 'cell', 'num_branches', 'num_subbranches', 'time_embedding_size',
                'num_items', 'num_tuning', 'cueing'):
      if key in config[section] and source_config[section].get(key) != config[section][key]:
        fields.append(f'config.{section}.{key}: {source_config[section].get(key)!r} (source) vs '
                      f'{config[section][key]!r}')
  source_size = source_config.train.get('ensemble_size', 1)
  member = int(config.train.get('init_member', -1))
  if member >= 0:
    # One member of an ensemble starts a single run.
    if train_step.ensemble_size(config) != 1 or not 0 <= member < source_size or source_size == 1:
      fields.append(f'config.train.init_member={member}: needs a source ensemble of more than '
                    f'one member (it has {source_size}) and a single run here (ensemble_size '
                    f'{train_step.ensemble_size(config)}), with 0 <= init_member < {source_size}')
  elif source_size != train_step.ensemble_size(config):
    fields.append(f"config.train.ensemble_size: {source_size!r} (source) vs "
                  f'{train_step.ensemble_size(config)!r} (or set config.train.init_member to '
                  'start a single run from one member)')
  try:
    _, source_state = checkpoints.load_trained(
        source_config, source_dir, member=member if member >= 0 and not fields else None)
  except FileNotFoundError as error:
    raise FileNotFoundError(f'config.train.init_from={config.train.init_from!r}: {error}') from None
  differences = _shape_differences(
      {'params': state.params, 'constants': state.constants},
      {'params': source_state.params, 'constants': source_state.constants})
  if differences or fields:
    raise ValueError(
        f'config.train.init_from={config.train.init_from!r}: the source network does not fit '
        f'this config ({"; ".join(fields + differences)}); train the source with the same '
        'model, task inputs and ensemble size')
  step = np.asarray(source_state.step)
  opt_state = (jax.vmap(tx.init)(source_state.params) if train_step.ensemble_size(config) > 1
               else tx.init(source_state.params))
  carried = bool(config.train.get('init_optimizer', False))
  if carried:
    if (jax.tree_util.tree_structure(source_state.opt_state)
        != jax.tree_util.tree_structure(opt_state)):
      raise ValueError(
          f'config.train.init_optimizer=True: the optimiser state of {source_dir} does not fit '
          'this config (config.train.grad_clip or config.train.schedule differ from the '
          "source's); use the same optimiser, or init_optimizer=False")
    opt_state = source_state.opt_state
  init_state = train_step.TrainState(step=jnp.zeros_like(state.step), params=source_state.params,
                          constants=source_state.constants, opt_state=opt_state)
  record = {'workdir': source_dir, 'step': step.tolist(), 'member': member if member >= 0 else None,
            'objective': source_config.objective.name,
            'behaviour': source_config.behaviour.to_dict(), 'optimiser_carried': carried}
  return init_state, record
