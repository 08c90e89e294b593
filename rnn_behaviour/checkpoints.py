"""Checkpoints: the Orbax manager of a workdir, restoring the newest readable state, and
`load_trained`, the seam of a finished run with its state.

Steps are asked of Orbax's manager (`all_steps`, `latest_step`), never parsed from folder names.
A damaged checkpoint is never skipped silently (`restore_latest`).
"""

from __future__ import annotations

import functools
import os
import time

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp

from rnn_behaviour import errors
from rnn_behaviour import parallel
from rnn_behaviour import sampling
from rnn_behaviour import train_step
from rnn_behaviour import workdir as workdir_lib

CHECKPOINT_DIR = workdir_lib.CHECKPOINT_DIR


BROKEN_CHECKPOINTS_DIR = 'broken_checkpoints'


# What Orbax says when a checkpoint is whole but holds other shapes or another tree.
_MISMATCH = ('not compatible with the stored shape', 'tree structure', 'do not match',
             'missing key', 'unexpected key')


class CheckpointMismatch(errors.UserError, ValueError):
  """A workdir's checkpoints hold another network than the config builds."""


class CheckpointsUnreadable(errors.UserError, ValueError):
  """No checkpoint of a workdir can be read (each is damaged)."""


def _best_metric(metrics) -> float:
  return float(metrics['loss_level'])


def absolute_path(path) -> epath.Path:
  """An absolute path (Orbax wants one); cloud paths are absolute already."""
  return epath.Path(os.path.abspath(path) if workdir_lib.is_local(path) else path)


def checkpoint_manager(workdir: str, train_config=None, read_only: bool = False
                       ) -> ocp.CheckpointManager:
  """Orbax manager of <workdir>/checkpoints.

  Rotation keeps the config.train.keep_checkpoints latest checkpoints and, in addition, the
  best one by the running loss level saved with it (`loss_level`), so that a run that degrades
  without NaN cannot rotate out its last good state. Checkpoints written before this metric
  existed are rotated by recency only. `read_only` opens an existing directory without creating,
  saving or deleting anything (and needs no `train_config`).
  """
  path = absolute_path(workdir) / CHECKPOINT_DIR
  if jax.process_count() > 1:
    _write_replicated_arrays_whole()
  if read_only:
    # Read by this process alone: in a multi-process job only process 0 evaluates.
    extra = ({'multiprocessing_options': parallel.single_process_options()}
             if jax.process_count() > 1 else {})
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(
        read_only=True, create=False, **extra))
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=train_config.keep_checkpoints),
      ocp.checkpoint_managers.BestN(get_metric_fn=_best_metric, reverse=True, n=1,
                                    keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(create=True, preservation_policy=policy)
  return ocp.CheckpointManager(path, options=options)


@functools.cache
def _write_replicated_arrays_whole() -> None:
  """Multi-process jobs: Orbax writes each replicated array from one replica, unsliced.

  Orbax's default replica-parallel writing slices the array among its replicas; on CPU hosts
  (gloo) the processes then took different paths through the save and the job hung at the
  first checkpoint (measured with 2 processes x 2 devices). Registered once per process.
  """
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return (text.splitlines()[0] if text else type(error).__name__)[:240]


def _is_mismatch(error: BaseException) -> bool:
  return (isinstance(error, (KeyError, TypeError))
          or any(m in str(error).lower() for m in _MISMATCH))


def restore_latest(manager: ocp.CheckpointManager, template: train_step.TrainState,
                   broken_to: epath.Path | None = None) -> train_step.TrainState | None:
  """The newest checkpoint that can be read into `template`'s shapes, or None (no checkpoint).

  A checkpoint that cannot be read (damaged, half deleted) is never skipped silently: each is
  named in a warning, and the newest intact one before it is used, with a warning that says
  which and how to remove the broken ones. With `broken_to` (training: the broken steps would
  otherwise block the saves of those steps) they are moved there, by process 0.

  Raises:
    CheckpointMismatch: none fits and the newest is whole but holds another network (the
      workdir was trained with another model or task config).
    CheckpointsUnreadable: no checkpoint can be read.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return None
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
  directory = epath.Path(manager.directory)
  broken = []
  for step in steps:
    try:
      state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many kinds of error for a damaged checkpoint.
      if not broken and _is_mismatch(error):
        raise CheckpointMismatch(
            f"the checkpoint at step {step} in {directory} does not fit this config's network "
            '(was the workdir trained with another model or task config? see its '
            f'config.json); use a new --workdir. Orbax said: {_first_line(error)}') from error
      logging.warning('The checkpoint at step %d (%s) cannot be read, so it is not used: %s',
                      step, directory / str(step), _first_line(error))
      broken.append(step)
      continue
    if broken:
      _report_broken(manager, directory, broken, step, broken_to)
    return state
  remove = ' '.join(os.fspath(directory / str(s)) for s in broken)
  raise CheckpointsUnreadable(
      f'no checkpoint in {directory} can be read (steps {", ".join(map(str, broken))}; see '
      f'the warnings above for why). Remove them (rm -r {remove}) to train afresh, or start '
      'the workdir over with --restart.')


def _report_broken(manager: ocp.CheckpointManager, directory: epath.Path, broken: list[int],
                   used: int, broken_to: epath.Path | None) -> None:
  """Warns that `used` replaces the unreadable `broken` steps; moves them to `broken_to`."""
  names = ', '.join(map(str, broken))
  if broken_to is None:
    remove = ' '.join(os.fspath(directory / str(s)) for s in broken)
    logging.warning('Using the checkpoint at step %d, the newest that can be read, instead of '
                    'the broken one(s) at step %s. Remove them with: rm -r %s', used, names,
                    remove)
    return
  if parallel.is_chief():
    for step in broken:
      aside = epath.Path(broken_to) / f'{step}.{int(time.time())}'
      aside.parent.mkdir(parents=True, exist_ok=True)
      (directory / str(step)).rename(aside)
  parallel.barrier('broken checkpoints moved')
  manager.reload()
  logging.warning('Resuming from the checkpoint at step %d, the newest that can be read; the '
                  'broken one(s) at step %s were moved to %s (kept for inspection; remove them '
                  'with: rm -r %s).', used, names, broken_to, broken_to)


def load_trained(config, workdir: str, member: int | None = None
                 ) -> tuple[sampling.Sampler, train_step.TrainState]:
  """The seam of a run and its latest checkpointed state; reads only, creates nothing.

  Returns (sample, state): `sample(state.variables, displays, key, num_samples)` draws from the
  trained network (`sampling.Sampler`; its `network` for analyses of the dynamics). For an
  ensemble, `member` selects one member's state (no member axis); None returns the stacked
  ensemble state, which `sample.members` samples in one call.
  """
  if not workdir_lib.has_checkpoint(workdir):
    raise FileNotFoundError(f'no checkpoint in {epath.Path(workdir) / CHECKPOINT_DIR}; '
                            'train first (--mode=train)')
  built = train_step.build(config, behaviour_model=False)
  template = train_step.init_states(built, train_step.member_seeds(config))
  manager = checkpoint_manager(workdir, config.train, read_only=True)
  try:
    state = restore_latest(manager, template)
  finally:
    manager.close()
  if state is None:
    raise FileNotFoundError(f'no checkpoint in {epath.Path(workdir) / CHECKPOINT_DIR}; '
                            'train first (--mode=train)')
  size = train_step.ensemble_size(config)
  if member is not None and size > 1:
    if not 0 <= member < size:
      raise ValueError(f'member {member} is outside the ensemble of {size} in {workdir}')
    state = train_step.member_slice(state, member)
  return built.sample, state


def kept_checkpoint_message(manager: ocp.CheckpointManager, directory: str) -> str:
  """Where the last good state is, in words, for the message of a stopped run."""
  step = manager.latest_step()
  if step is None:
    return 'it diverged before its first checkpoint, so none was written'
  return f'the last good checkpoint (step {step}) is kept in {directory}'


def all_steps(workdir: str) -> list[int]:
  """The steps checkpointed in `workdir`, oldest first (Orbax's manager says); [] without any."""
  if not workdir_lib.has_checkpoint(workdir):
    return []
  manager = checkpoint_manager(workdir, read_only=True)
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def latest_step(workdir: str) -> int | None:
  """The latest checkpointed step of `workdir` (Orbax's manager says); None without any."""
  steps = all_steps(workdir)
  return steps[-1] if steps else None
