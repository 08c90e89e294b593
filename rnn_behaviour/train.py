"""The training loop: restore, step, log, save, for one run or a seed ensemble.

The rooms it orchestrates: train_step.py (the build seam and the jitted step), checkpoints.py
(Orbax), warm_start.py (config.train.init_from), run_record.py (metrics, config history, resume
checks, supersede) and divergence.py (the divergence watch).

What the loop guarantees (see also rnn_behaviour/workdir.py):
- One trainer per workdir (a lock file with pid and host; a dead owner's lock is reclaimed).
- A resumed run computes what the original run would have (`run_record.check_resumable`);
  `train(..., restart=True)` starts afresh and moves the old outputs to `superseded/`.
- A diverging run stops (`divergence.watch_loss`); no checkpoint is written while a loss is far
  above its level, and rotation keeps the best checkpoint as well as the latest ones.

The trainer's public names are importable from here as well as from their rooms
(`train.build`, `train.load_trained`, `train.read_metrics`, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Callable

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from rnn_behaviour import config_validation
from rnn_behaviour import metric_writers
from rnn_behaviour import parallel
from rnn_behaviour import progress
from rnn_behaviour import workdir as workdir_lib
# The rooms, and the names callers reach through `train.` (re-exported on purpose).
from rnn_behaviour import checkpoints
from rnn_behaviour import divergence
from rnn_behaviour import run_record
from rnn_behaviour import train_step
from rnn_behaviour import warm_start
from rnn_behaviour.checkpoints import (  # pylint: disable=unused-import
    BROKEN_CHECKPOINTS_DIR, CHECKPOINT_DIR, CheckpointMismatch, CheckpointsUnreadable,
    checkpoint_manager, latest_step, load_trained, restore_latest)
from rnn_behaviour.divergence import (  # pylint: disable=unused-import
    LossWatch, TrainingDiverged, new_loss_watch, watch_loss)
from rnn_behaviour.run_record import (  # pylint: disable=unused-import
    HISTORY_FILE, MEMBERS_DIR, METRICS_FILE, RESUME_FREE, SUPERSEDED_DIR, check_resumable,
    config_differences, load_run_config, read_metrics, record_history, save_config, supersede)
from rnn_behaviour.train_step import (  # pylint: disable=unused-import
    SCHEDULES, Built, TrainState, build, create_train_state, decay_horizon, ensemble_size,
    init_states, input_size, learning_rate_schedule, make_optimizer, make_train_step,
    member_seeds, member_slice, place, root_keys, run_mesh, stack_members, step_keys, to_host,
    train_step_fn)
from rnn_behaviour.warm_start import initialise_from  # pylint: disable=unused-import

__all__ = (
    'train', 'BROKEN_CHECKPOINTS_DIR', 'Built', 'CHECKPOINT_DIR', 'CheckpointMismatch',
    'CheckpointsUnreadable', 'HISTORY_FILE', 'LossWatch', 'MEMBERS_DIR', 'METRICS_FILE',
    'RESUME_FREE', 'SCHEDULES', 'SUPERSEDED_DIR', 'TrainState', 'TrainingDiverged', 'build',
    'check_resumable', 'checkpoint_manager', 'config_differences', 'create_train_state',
    'decay_horizon', 'ensemble_size', 'init_states', 'initialise_from', 'input_size',
    'latest_step', 'learning_rate_schedule', 'load_run_config', 'load_trained',
    'make_optimizer', 'make_train_step', 'member_seeds', 'member_slice', 'new_loss_watch',
    'place', 'read_metrics', 'record_history', 'restore_latest', 'root_keys', 'run_mesh',
    'save_config', 'stack_members', 'step_keys', 'supersede', 'to_host', 'train_step_fn',
    'watch_loss')


def train(config: ml_collections.ConfigDict, workdir: str, restart: bool = False,
          monitor: Callable | None = None) -> TrainState:
  """Trains, resuming from the latest checkpoint in `workdir` if there is one.

  A fresh run starts from config.train.init_from's final parameters when that is set.

  Args:
    config: the run's config.
    workdir: the run's directory; checked first, and locked while training.
    restart: start afresh even if `workdir` holds a run (of any config): its outputs move to
      <workdir>/superseded/<time>/ first. Without it, a workdir whose checkpoints were computed
      under another config is refused (check_resumable).
    monitor: optional hook with an `every` attribute, called as `monitor(step, variables)`
      every `monitor.every` steps and at the last step (`criteria.Monitor`: a curriculum
      stage's learning criterion); when it returns True, training saves a checkpoint at that
      step and stops early.

  Raises:
    TrainingDiverged: the loss diverged (non-finite, or far above its running level for
      config.train.divergence_patience steps); for an ensemble, only when every member has.
    workdir_lib.WorkdirLocked: another trainer holds the workdir.
  """
  config_validation.validate(config)
  workdir_lib.check(workdir)
  chief = jax.process_index() == 0
  with (workdir_lib.lock(workdir) if chief else contextlib.nullcontext()):
    superseded = run_record.supersede(workdir) if restart and chief else None
    if superseded:
      logging.warning('Starting %s afresh; its previous outputs moved to %s.', workdir,
                      superseded)
    run_record.check_resumable(config, workdir)
    return _train_locked(config, workdir, 'restart' if superseded else None, monitor)


@dataclasses.dataclass
class _Loop:
  """What the loop carries from step to step besides the state.

  snapshot, snapshot_steps: the last saved state (a copy on the devices) and its per-member
    steps, to roll a diverging ensemble member back to (None for one run).
  alive: (E,) members still training. watch: the divergence watch.
  last_time, last_step: when the steps-per-second rate was last measured.
  save_due: a checkpoint is due (its cadence passed while saving was held back).
  """
  snapshot: object
  snapshot_steps: np.ndarray
  alive: np.ndarray
  watch: divergence.LossWatch
  last_time: float
  last_step: int
  save_due: bool = False


def _train_locked(config, workdir: str, event: str | None, monitor=None) -> TrainState:
  built = train_step.build(config, workdir, mesh=train_step.run_mesh(config))
  seeds = train_step.member_seeds(config)
  manager = checkpoints.checkpoint_manager(workdir, config.train)
  state, restored, extra = _restore_or_initialise(config, workdir, built, seeds, manager)
  steps = train_step.to_host(state.step).reshape(-1)
  start = int(np.max(steps))
  if parallel.is_chief():
    _record_start(config, workdir, event or ('resume' if restored else 'start'), start, extra)
  _log_run(config, built, state, seeds)
  if start > config.train.num_steps:
    # Not "training: 20/10 steps": say that there is nothing to do.
    progress.say(f'training: nothing to do: the run in {workdir} is already at step {start}, '
                 f'past config.train.num_steps={config.train.num_steps}; to train on, pass '
                 f'--config.train.num_steps above {start}.')
    manager.close()
    return state
  writers = _writers(workdir, len(seeds), start) if parallel.is_chief() else []
  reporter = progress.ProgressReporter(config.train.num_steps, 'training', start=start)
  try:
    state = _run_steps(config, workdir, built, seeds, state, steps, manager, writers, reporter,
                       monitor)
    manager.wait_until_finished()
  finally:
    # Closing waits at a barrier for every process: not for a dead one (main.py exits at once).
    if parallel.peer_failure(sys.exc_info()[1]) is None:
      manager.close()
    reporter.close()
    for writer in writers:
      writer.close()
  return state


def _restore_or_initialise(config, workdir: str, built, seeds, manager
                           ) -> tuple[TrainState, bool, dict]:
  """The state training starts from: the newest readable checkpoint, else a warm start from
  config.train.init_from, else a fresh initialisation. Returns (state, restored, extra), extra
  being what config.json records of a warm start."""
  state = train_step.init_states(built, seeds)
  try:
    restored = checkpoints.restore_latest(
        manager, state, broken_to=epath.Path(workdir) / checkpoints.BROKEN_CHECKPOINTS_DIR)
  except ValueError:
    manager.close()
    raise
  if restored is not None:
    previous = run_record.saved_config(workdir) or {}
    logging.info('Resumed from checkpoint at step %d in %s.', int(np.max(restored.step)),
                 workdir)
    return restored, True, {k: v for k, v in previous.items() if k == 'initialised_from'}
  if config.train.get('init_from', ''):
    state, source_record = warm_start.initialise_from(config, state, built.tx)
    state = train_step.place(state, built, len(seeds))
    logging.info('Initialised from %s (its step %s); optimiser %s.', source_record['workdir'],
                 source_record['step'],
                 'carried over' if source_record['optimiser_carried'] else 'fresh')
    return state, False, {'initialised_from': source_record}
  return state, False, {}


def _record_start(config, workdir: str, event: str, start: int, extra: dict) -> None:
  """The config history, config.json, and metric logs cut back to the starting step."""
  run_record.record_history(config, workdir, event, start, extra)
  run_record.save_config(config, workdir, extra)
  for path in run_record.metric_files(workdir):
    run_record.truncate_metrics(path, start)


def _log_run(config, built, state, seeds) -> None:
  c = config.train
  num_params = sum(p.size for p in jax.tree_util.tree_leaves(state.params))
  logging.info('Training %s cell, %d units, %d parameters%s, %d displays x %d samples per step.',
               config.model.cell, config.model.num_units, num_params,
               f' ({len(seeds)} members, seeds {seeds})' if len(seeds) > 1 else '',
               c.displays_per_batch, c.samples_per_display)
  if built.mesh is not None:
    logging.info('Devices: %d (%s) in a mesh of %s over %d process(es).', built.mesh.size,
                 built.mesh.devices.flat[0].platform, dict(built.mesh.shape),
                 jax.process_count())


def _run_steps(config, workdir: str, built, seeds, state, steps, manager, writers, reporter,
               monitor) -> TrainState:
  """Steps from the state's step to config.train.num_steps (or until `monitor` is met)."""
  c = config.train
  num_members = len(seeds)
  start = int(np.max(steps))
  step_fn = train_step.train_step_fn(built, seeds)
  loop = _Loop(snapshot=divergence.copy_state(state) if num_members > 1 else None,
               snapshot_steps=steps, alive=steps == start,
               watch=divergence.new_loss_watch(num_members), last_time=time.time(),
               last_step=start)
  for step in range(start, c.num_steps):
    new_state, metrics, finite = step_fn(state)
    finite, losses = jax.device_get((finite, metrics['loss']))
    finite, losses = np.asarray(finite).reshape(-1), np.asarray(losses).reshape(-1)
    done = step + 1
    loop.watch, far, diverged = divergence.watch_loss(loop.watch, losses, loop.alive & finite, c)
    if num_members == 1:
      _stop_if_diverged(c, workdir, manager, loop.watch, metrics, losses, finite, diverged, done)
      state = new_state
    else:
      state = _drop_failed_members(c, workdir, manager, loop, new_state, seeds, losses, finite,
                                   diverged, done)
    reporter.update(done, loss=float(np.mean(losses[loop.alive])),
                    **({'live_members': int(loop.alive.sum())} if num_members > 1 else {}))
    if done % c.log_every == 0 or done == c.num_steps:
      _write_metrics(workdir, writers, loop, metrics, num_members, done)
    loop.save_due = loop.save_due or done % c.checkpoint_every == 0
    learned = (monitor is not None and (done % monitor.every == 0 or done == c.num_steps)
               and monitor(done, state.variables))
    # No checkpoint while a live loss is far above its level: it may be diverging.
    if done == c.num_steps or learned or (loop.save_due and not (far & loop.alive).any()):
      _save(manager, loop, state, done, num_members)
    if learned:
      logging.info('Learning criterion met at step %d: training stops here.', done)
      break
  return state


def _stop_if_diverged(c, workdir: str, manager, watch, metrics, losses, finite, diverged,
                      done: int) -> None:
  """One run: raises when its step `done` is non-finite or has diverged."""
  if finite[0] and not diverged[0]:
    return
  manager.wait_until_finished()
  kept = checkpoints.kept_checkpoint_message(manager, _checkpoint_folder(workdir))
  if not finite[0]:
    raise FloatingPointError(
        f'non-finite training metrics at step {done}: {_message_step(metrics, None)}. '
        f'Training stopped; {kept}. Lower config.train.learning_rate or set '
        'config.train.grad_clip.')
  raise TrainingDiverged(
      f'training diverged at step {done}: the loss ({losses[0]:.4g}) has been above '
      f'{c.get("divergence_factor", 100.0):g} x its running level ({watch.level[0]:.4g}) '
      f'for {int(watch.streak[0])} steps (config.train.divergence_factor, '
      f'divergence_patience). Training stopped; {kept}. Lower '
      'config.train.learning_rate or set config.train.grad_clip, in a new --workdir or '
      'with train(..., restart=True).')


def _drop_failed_members(c, workdir: str, manager, loop: _Loop, state, seeds, losses, finite,
                         diverged, done: int) -> TrainState:
  """An ensemble's step: non-finite members stay frozen (the step kept them), diverged ones
  roll back to the last saved state; both stop. Raises when no member is left."""
  alive, watch = loop.alive, loop.watch
  for i in np.flatnonzero(alive & ~finite):
    logging.warning('Ensemble member %d (seed %d) has non-finite metrics at step %d: it '
                    'is stopped at its last good state (step %d); the others go on.', i,
                    seeds[i], done, done - 1)
  rolled = np.flatnonzero(alive & finite & diverged)
  if rolled.size:
    state = divergence.roll_back(state, loop.snapshot, rolled)
  for i in rolled:
    logging.warning(
        'Ensemble member %d (seed %d) diverged at step %d (loss %.4g, %d steps above '
        '%g x its running level %.4g): it is rolled back to its last saved state (step '
        '%d) and stopped there; the others go on.', i, seeds[i], done, losses[i],
        watch.streak[i], c.get('divergence_factor', 100.0), watch.level[i],
        int(loop.snapshot_steps[i]))
  loop.alive = alive & finite & ~diverged
  if not loop.alive.any():
    manager.wait_until_finished()
    raise TrainingDiverged(
        f'every ensemble member diverged by step {done}; '
        f'{checkpoints.kept_checkpoint_message(manager, _checkpoint_folder(workdir))}. Lower '
        'config.train.learning_rate or set config.train.grad_clip.')
  return state


def _write_metrics(workdir: str, writers, loop: _Loop, metrics, num_members: int,
                   done: int) -> None:
  """Step `done`'s metrics and the steps per second since the last write."""
  now = time.time()
  rate = (done - loop.last_step) / max(now - loop.last_time, 1e-9)
  loop.last_time, loop.last_step = now, done
  values = jax.device_get(metrics)
  if num_members == 1 and writers:
    writers[0].write_scalars(done, {**values, 'steps_per_s': rate})
  for i, writer in enumerate(writers if num_members > 1 else []):
    scalars = {k: np.asarray(v)[i] for k, v in values.items()}
    writer.write_scalars(done, {**scalars, 'steps_per_s': rate})
    run_record.append_member_record(workdir, done, i, scalars, rate)


def _save(manager, loop: _Loop, state, done: int, num_members: int) -> None:
  """A checkpoint at step `done`, with the live members' loss level for best-of rotation."""
  level = float(np.nanmean(np.where(loop.alive, loop.watch.level, np.nan)))
  manager.save(done, args=ocp.args.StandardSave(state),
               metrics={'loss_level': level} if np.isfinite(level) else None)
  loop.save_due = False
  if num_members > 1:
    loop.snapshot = divergence.copy_state(state)
    loop.snapshot_steps = train_step.to_host(state.step)


def _checkpoint_folder(workdir: str) -> str:
  return os.fspath(epath.Path(workdir) / checkpoints.CHECKPOINT_DIR)


def _writers(workdir: str, num_members: int, start: int) -> list[metric_writers.MetricWriter]:
  """Metric writers: one for a run; for an ensemble one per member, whose TensorBoard events go
  to members/member_<i>/ (so TensorBoard overlays the members as runs) and whose records go to
  the run's metrics.jsonl with a 'member' field, plus the member's own metrics.jsonl copy."""
  if num_members == 1:
    return [metric_writers.MetricWriter(workdir, resume_step=start)]
  return [metric_writers.MetricWriter(
      os.fspath(epath.Path(workdir) / run_record.MEMBERS_DIR / f'member_{i}'), resume_step=start)
          for i in range(num_members)]


def _message_step(metrics, member: int | None) -> dict:
  metrics = jax.device_get(metrics)
  if member is None:
    return {k: float(v) for k, v in metrics.items()}
  return {k: float(np.asarray(v)[member]) for k, v in metrics.items()}
