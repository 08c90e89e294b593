"""Training: the build seam, the jitted train step, and the loop with checkpoints and metrics.

`build(config, workdir)` turns a config into pure functions (`init`, `train_step`,
`sample_batch`, `sample`); the loop in `train` only orchestrates: restore, step, log, save.

Randomness is a pure function of (seed, step): the batch of step s is drawn with
fold_in(data_key, s) and its noise with fold_in(noise_key, s). A run resumed from a checkpoint
at step s therefore continues exactly as the uninterrupted run would have.

Seed ensembles (`config.train.ensemble_size = E > 1`) train E networks with seeds
config.seed + i in one jitted step: parameters, optimiser state and keys carry a leading member
axis and the step is vmapped, so member i computes exactly what a standalone run with seed
config.seed + i computes. A member whose metrics turn non-finite is frozen at its last good
state (its `step` stops advancing) while the others go on; a member is alive iff its step
equals the ensemble's.

What the loop guarantees (see also rnn_behaviour/workdir.py):
- One trainer per workdir (a lock file with pid and host; a dead owner's lock is reclaimed).
- A resumed run computes what the original run would have: any config change that alters the
  computation is refused, naming the fields (`config_differences`). Extending a run needs the
  schedule's length fixed explicitly (config.train.decay_steps); `train(..., restart=True)`
  starts afresh and moves the old outputs to `superseded/`. Every config a workdir has trained
  under is appended to `config_history.jsonl`.
- A diverging run stops: non-finite metrics, or a loss above config.train.divergence_factor x
  its running level for config.train.divergence_patience steps in a row. Checkpoints are not
  written while a loss is far above its level, and rotation keeps the best checkpoint (by the
  running loss level) as well as the latest ones, so the last good state always survives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import socket
import sys
import time
from typing import Any, Callable

from absl import logging
from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from rnn_behaviour import config_validation
from rnn_behaviour import errors
from rnn_behaviour import metric_writers
from rnn_behaviour import objectives
from rnn_behaviour import parallel
from rnn_behaviour import progress
from rnn_behaviour import rnn
from rnn_behaviour import task as task_lib
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.behaviour import source

METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = workdir_lib.CHECKPOINT_DIR
HISTORY_FILE = 'config_history.jsonl'
MEMBERS_DIR = 'members'        # An ensemble's per-member TensorBoard events and metrics.
SUPERSEDED_DIR = 'superseded'  # Outputs of runs replaced by `train(..., restart=True)`.


class TrainingDiverged(FloatingPointError):
  """The loss left its running level for good; training stopped."""


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any
  constants: Any          # The fixed readout; saved with the run, never trained.
  opt_state: Any

  @property
  def variables(self):
    return {'params': self.params, 'constants': self.constants}


@functools.lru_cache(maxsize=64)
def root_keys(seed: int):
  """(init_key, data_key, noise_key) of a run (cached: the loop asks for them every step).

  Always concrete, even when first asked for inside a traced function (so the cache never
  holds a tracer).
  """
  with jax.ensure_compile_time_eval():
    return tuple(jax.random.split(jax.random.key(int(seed)), 3))


def decay_horizon(train_config) -> int:
  """The step at which the cosine schedule reaches its end value (a tenth of the peak).

  config.train.decay_steps when set, else config.train.num_steps; past it the learning rate
  stays at its end value. Accepts a ConfigDict or the dict of a saved config.json.
  """
  steps = int(train_config.get('decay_steps', 0) or 0) or int(train_config['num_steps'])
  return max(steps, int(train_config['warmup_steps']) + 1)


SCHEDULES = ('cosine', 'constant')


def learning_rate_schedule(train_config) -> optax.Schedule:
  """config.train.schedule: 'cosine' (linear warmup, then cosine decay to a tenth at
  `decay_horizon`) or 'constant' (linear warmup, then the peak for ever: the authors' Adam 1e-3,
  which never depends on the stage's length)."""
  c = train_config
  if c.get('schedule', 'cosine') == 'constant':
    if not c.warmup_steps:
      return optax.constant_schedule(c.learning_rate)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, c.learning_rate, c.warmup_steps),
         optax.constant_schedule(c.learning_rate)], [c.warmup_steps])
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=c.learning_rate, warmup_steps=c.warmup_steps,
      decay_steps=decay_horizon(c), end_value=0.1 * c.learning_rate)


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Adam after global-norm clipping (none when config.train.grad_clip is 0), on the
  schedule of `learning_rate_schedule`."""
  c = train_config
  schedule = learning_rate_schedule(c)
  parts = [optax.clip_by_global_norm(c.grad_clip)] if c.grad_clip else []
  return optax.chain(*parts, optax.adam(schedule))


def input_size(task_config) -> int:
  return sum(task_lib.input_sizes(task_config.num_items, task_config.num_tuning,
                                  task_config.cueing))


def create_train_state(config, network: rnn.Network, tx: optax.GradientTransformation,
                       key) -> TrainState:
  variables = network.init(key, input_size(config.task))
  return TrainState(step=jnp.asarray(0, jnp.int32), params=variables['params'],
                    constants=variables['constants'],
                    opt_state=tx.init(variables['params']))


def _split_chunks(tree, num_chunks: int):
  """Splits the leading (display) axis of every leaf into (num_chunks, K / num_chunks, ...)."""
  return jax.tree_util.tree_map(
      lambda a: a.reshape((num_chunks, a.shape[0] // num_chunks) + a.shape[1:]), tree)


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation,
                    num_chunks: int = 1, mesh=None) -> Callable:
  """train_step(state, batch, key) -> (state, metrics), pure and unjitted.

  With num_chunks > 1 the displays are processed a chunk at a time and the gradients averaged,
  which bounds memory (and keeps intermediates in cache) at no change to the result beyond
  the per-display statistics being computed chunk by chunk. Chunk c holds displays
  [c K/C, (c+1) K/C) and draws its noise from split(key, C)[c], whatever the devices.

  With a `mesh` whose 'displays' axis has D > 1 devices, the batch's display axis is sharded
  over them; chunks stay whole on a device: device d scans over chunks d C/D ... (d+1) C/D - 1,
  the D devices' chunks of one scan step being computed side by side (vmapped over D).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  shards = 1 if mesh is None else mesh.shape[parallel.DISPLAYS]

  def zeros_like_grads(params, constants, first_chunk, key):
    _, metric_shapes = jax.eval_shape(grad_fn, params, constants, first_chunk, key)[0]
    return (jax.tree_util.tree_map(jnp.zeros_like, params),
            jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes))

  def compute_grads(params, constants, batch, key):
    if num_chunks == 1:
      (_, metrics), grads = grad_fn(params, constants, parallel.shard_displays(batch, mesh),
                                    key)
      return grads, metrics
    keys = jax.random.split(key, num_chunks)
    if shards == 1:
      # One device: the original scan (the blocked one below with D = 1 computes the same
      # numbers up to float order; this keeps single-device runs bit-identical to before).
      def accumulate(total, inputs):
        chunk, k = inputs
        (_, metrics), grads = grad_fn(params, constants, chunk, k)
        return jax.tree_util.tree_map(jnp.add, total, (grads, metrics)), None

      chunks = _split_chunks(batch, num_chunks)
      first = jax.tree_util.tree_map(lambda a: a[0], chunks)
      total, _ = jax.lax.scan(accumulate, zeros_like_grads(params, constants, first, keys[0]),
                              (chunks, keys))
      return jax.tree_util.tree_map(lambda a: a / num_chunks, total)

    # (K, ...) -> (D, C/D, K/C, ...): device block d holds chunks d C/D ... (d+1) C/D - 1.
    per_device = num_chunks // shards
    blocks = jax.tree_util.tree_map(
        lambda a: a.reshape((shards, per_device, a.shape[0] // num_chunks) + a.shape[1:]),
        parallel.shard_displays(batch, mesh))
    block_keys = keys.reshape((shards, per_device))
    side_by_side = jax.vmap(grad_fn, in_axes=(None, None, 0, 0))

    def accumulate(total, i):
      chunk = parallel.shard_displays(jax.tree_util.tree_map(lambda a: a[:, i], blocks), mesh)
      (_, metrics), grads = side_by_side(params, constants, chunk, block_keys[:, i])
      summed = jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0), (grads, metrics))
      return jax.tree_util.tree_map(jnp.add, total, summed), None

    first = jax.tree_util.tree_map(lambda a: a[0, 0], blocks)
    total, _ = jax.lax.scan(accumulate, zeros_like_grads(params, constants, first, keys[0]),
                            jnp.arange(per_device))
    return jax.tree_util.tree_map(lambda a: a / num_chunks, total)

  def train_step(state: TrainState, batch, key):
    grads, metrics = compute_grads(state.params, state.constants, batch, key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.global_norm(grads))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def _num_chunks(train_config) -> int:
  chunk = train_config.displays_per_chunk
  return train_config.displays_per_batch // chunk if chunk else 1


def ensemble_size(config) -> int:
  """E, the number of seeds trained together (1: a standalone run, no member axis)."""
  return int(config.train.get('ensemble_size', 1))


def member_seeds(config) -> list[int]:
  """The seeds of an ensemble's members: config.seed + i."""
  return [int(config.seed) + i for i in range(ensemble_size(config))]


def stack_members(trees):
  """Stacks per-member pytrees along a new leading member axis."""
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def member_slice(tree, member: int):
  """Member `member` of a stacked (ensemble) pytree."""
  return jax.tree_util.tree_map(lambda a: a[member], tree)


@dataclasses.dataclass(frozen=True)
class Built:
  """A config turned into pure functions; everything else (the loop, benchmarks, evaluation,
  analysis, notebooks) calls these.

  init(key) -> TrainState; train_step(state, batch, key) -> (state, metrics);
  sample_batch(key) -> objectives.Batch; sample(variables, displays, key, num_samples) ->
  responses (K, S) of the free-running network. None is jitted; `train_step_fn` below gives
  the jitted (and, for ensembles, vmapped) step the loop runs.
  """
  config: Any
  network: rnn.Network
  tx: optax.GradientTransformation
  behaviour_model: Any
  init: Callable
  train_step: Callable
  sample_batch: Callable
  sample: Callable
  mesh: Any = None


def build(config, workdir: str | None = None, behaviour_model=None, mesh=None) -> Built:
  """The seam: config -> network, optimiser and pure init/step/batch/sample functions.

  `mesh` (parallel.make_mesh) shards the train step's displays over its devices; None: one
  device, no sharding.
  """
  network = rnn.make_network(config)
  tx = make_optimizer(config.train)
  if behaviour_model is None:
    behaviour_model = source.training_model_from_config(config, workdir)
  loss_fn = objectives.make_loss_fn(config, network)

  def init(key) -> TrainState:
    return create_train_state(config, network, tx, key)

  def sample_batch(key):
    return objectives.sample_batch(key, config, behaviour_model)

  def sample(variables, displays, key, num_samples: int):
    inputs = task_lib.epoch_inputs_from_config(displays, config.task)
    return network.sample(variables, inputs, key, num_samples, onset=config.diffusion.onset)[0]

  return Built(config=config, network=network, tx=tx, behaviour_model=behaviour_model,
               init=init,
               train_step=make_train_step(loss_fn, tx, _num_chunks(config.train), mesh),
               sample_batch=sample_batch, sample=sample, mesh=mesh)


def init_states(built: Built, seeds) -> TrainState:
  """Initial state of one run (one seed: no member axis) or of an ensemble (stacked).

  With a mesh the state is created on it (replicated, or split along the member axis), by a
  jitted initialiser so that every process of a multi-process job holds its part of one
  global state.
  """
  def initial():
    if len(seeds) == 1:
      return built.init(root_keys(seeds[0])[0])
    return stack_members([built.init(root_keys(s)[0]) for s in seeds])

  if built.mesh is None:
    return initial()
  shardings = parallel.state_sharding(built.mesh, jax.eval_shape(initial), len(seeds))
  return jax.jit(initial, out_shardings=shardings)()


def step_keys(seeds, step):
  """(data keys, noise keys) of training step `step` for each seed, stacked if several.

  `step` may be traced: the jitted step derives its keys from the state's step counter.
  """
  keys = [root_keys(s) for s in seeds]
  data = [jax.random.fold_in(k[1], step) for k in keys]
  noise = [jax.random.fold_in(k[2], step) for k in keys]
  if len(seeds) == 1:
    return data[0], noise[0]
  return jnp.stack(data), jnp.stack(noise)


def _all_finite(metrics):
  """True where every metric is finite; per member if metrics carry a member axis."""
  flags = [jnp.isfinite(v) for v in jax.tree_util.tree_leaves(metrics)]
  return functools.reduce(jnp.logical_and, flags)


def train_step_fn(built: Built, seeds) -> Callable:
  """The jitted step the loop runs: state -> (state, metrics, ok).

  The step's keys come from the seeds and the state's own step counter (the ensemble's: the
  largest member step), so a step is a pure function of the state and needs no host input;
  resuming at step s continues exactly as the uninterrupted run.
  One run: sample a batch and take a step. Ensemble: the same, vmapped over the member axis of
  state and keys; a member whose metrics are not finite, or that is already frozen (its step
  behind the others'), keeps its old state; `ok` says per member which moved on.
  With a mesh, the state keeps its sharding and metrics come back replicated.
  """
  seeds = tuple(int(s) for s in seeds)
  num_members = len(seeds)
  mesh = built.mesh

  def single(state, data_key, noise_key):
    batch = built.sample_batch(data_key)
    new_state, metrics = built.train_step(state, batch, noise_key)
    return new_state, metrics, _all_finite(metrics)

  def one_run(state):
    return single(state, *step_keys(seeds, state.step))

  def ensemble(state):
    step = jnp.max(state.step)
    alive = state.step == step
    spmd = {} if mesh is None or mesh.shape[parallel.MEMBERS] == 1 else {
        'spmd_axis_name': parallel.MEMBERS}
    new_state, metrics, finite = jax.vmap(single, **spmd)(state, *step_keys(seeds, step))
    keep = alive & finite

    def choose(new, old):
      return jnp.where(keep.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    return jax.tree_util.tree_map(choose, new_state, state), metrics, keep

  fn = one_run if num_members == 1 else ensemble
  if mesh is None:
    return jax.jit(fn, donate_argnums=(0,))
  state_shape = jax.eval_shape(lambda: init_states(dataclasses.replace(built, mesh=None), seeds))
  shardings = parallel.state_sharding(mesh, state_shape, num_members)
  return jax.jit(fn, in_shardings=(shardings,),
                 out_shardings=(shardings, parallel.replicated(mesh), parallel.replicated(mesh)),
                 donate_argnums=(0,))


def to_host(tree):
  """numpy copies of a pytree of (possibly sharded, possibly multi-process) arrays."""
  def fetch(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)
  return jax.tree_util.tree_map(fetch, tree)


def _best_metric(metrics) -> float:
  return float(metrics['loss_level'])


def _absolute(path) -> epath.Path:
  """An absolute path (Orbax wants one); cloud paths are absolute already."""
  return epath.Path(os.path.abspath(path) if workdir_lib.is_local(path) else path)


def checkpoint_manager(workdir: str, train_config, read_only: bool = False
                       ) -> ocp.CheckpointManager:
  """Orbax manager of <workdir>/checkpoints.

  Rotation keeps the config.train.keep_checkpoints latest checkpoints and, in addition, the
  best one by the running loss level saved with it (`loss_level`), so that a run that degrades
  without NaN cannot rotate out its last good state. Checkpoints written before this metric
  existed are rotated by recency only. `read_only` opens an existing directory without creating,
  saving or deleting anything.
  """
  path = _absolute(workdir) / CHECKPOINT_DIR
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


class CheckpointMismatch(errors.UserError, ValueError):
  """A workdir's checkpoints hold another network than the config builds."""


class CheckpointsUnreadable(errors.UserError, ValueError):
  """No checkpoint of a workdir can be read (each is damaged)."""


BROKEN_CHECKPOINTS_DIR = 'broken_checkpoints'
# What Orbax says when a checkpoint is whole but holds other shapes or another tree.
_MISMATCH = ('not compatible with the stored shape', 'tree structure', 'do not match',
             'missing key', 'unexpected key')


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return (text.splitlines()[0] if text else type(error).__name__)[:240]


def _is_mismatch(error: BaseException) -> bool:
  return (isinstance(error, (KeyError, TypeError))
          or any(m in str(error).lower() for m in _MISMATCH))


def restore_latest(manager: ocp.CheckpointManager, template: TrainState,
                   broken_to: epath.Path | None = None) -> TrainState | None:
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


def _metric_files(workdir: str) -> list[str]:
  """The run's metrics.jsonl and, for an ensemble, each member's copy."""
  members = epath.Path(workdir) / MEMBERS_DIR
  extra = sorted(d / METRICS_FILE for d in members.iterdir()) if members.is_dir() else []
  return [epath.Path(workdir) / METRICS_FILE] + extra


def _truncate_metrics(path: str, last_step: int) -> None:
  """Drops metric lines past a restored step (and torn lines), so a resumed log has neither
  duplicates nor a half-written record; the file is replaced atomically."""
  if not epath.Path(path).exists():
    return
  num_lines = sum(1 for line in epath.Path(path).read_text().splitlines() if line.strip())
  kept = [r for r in workdir_lib.read_jsonl(path) if r.get('step', 0) <= last_step]
  if len(kept) != num_lines:
    workdir_lib.write_jsonl_atomic(path, kept)


def read_metrics(workdir: str, member: int | None = None) -> list[dict]:
  """The metric records of a run; for an ensemble, those of one member (None: all).

  A torn line (a write cut short by a kill) is dropped with a warning.
  """
  records = workdir_lib.read_jsonl(epath.Path(workdir) / METRICS_FILE)
  for record in records:
    if 'member' in record:
      record['member'] = int(record['member'])
  if member is None:
    return records
  return [r for r in records if r.get('member', 0) == member]


SHAPE_SECTIONS = ('model', 'task')   # Config sections that fix the shapes in a checkpoint.

# Fields a resumed run may change: they do not alter what is computed. train.num_steps may grow
# (or shrink) as long as the schedule's length, decay_horizon(), stays the same.
RESUME_FREE = ('eval', 'analysis', 'train.num_steps', 'train.log_every',
               'train.checkpoint_every', 'train.keep_checkpoints', 'train.init_from',
               'train.init_member', 'train.init_optimizer',
               'train.remat', 'train.divergence_factor', 'train.divergence_patience',
               'train.divergence_window', 'parallel')
_HORIZON = 'train.decay_steps (effective: the cosine schedule\'s length)'


def _saved_config(workdir: str) -> dict | None:
  path = epath.Path(workdir) / 'config.json'
  if not path.exists():
    return None
  with path.open() as f:
    try:
      return json.load(f)
    except ValueError as error:
      raise ValueError(f'{path} is not valid JSON ({error}); it records the run\'s config, '
                       'restore it from config_history.jsonl') from None


def _has_checkpoints(workdir: str) -> bool:
  return workdir_lib.has_checkpoint(workdir)


def _flatten(tree, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = value
  return flat


def _computation(content: dict) -> dict:
  """The fields of a config (as JSON) that fix what a run computes, dotted, plus the derived
  ensemble size and schedule length (which older config.json files leave implicit)."""
  flat = {k: v for k, v in _flatten(content).items()
          if not any(k == f or k.startswith(f + '.') for f in RESUME_FREE)}
  flat.pop('train.decay_steps', None)
  train_content = content.get('train', {})
  flat['train.ensemble_size'] = train_content.get('ensemble_size', 1)
  if ('num_steps' in train_content and 'warmup_steps' in train_content
      and train_content.get('schedule', 'cosine') != 'constant'):
    flat[_HORIZON] = decay_horizon(train_content)
  return flat


def config_differences(saved: dict, config) -> list[str]:
  """'config.<field>: <before> -> <now>' for each field whose change would alter the run.

  A field that only one side has (a knob added to or removed from the code since) is not a
  difference: new knobs default to the old behaviour.
  """
  before = _computation(saved)
  now = _computation(json.loads(config.to_json_best_effort()))
  return [f'config.{k}: {before[k]!r} -> {now[k]!r}'
          for k in sorted(set(before) & set(now)) if before[k] != now[k]]


def check_resumable(config, workdir: str) -> None:
  """Fails, naming the fields, if `workdir` holds checkpoints of a run computed differently.

  Allowed: the fields in RESUME_FREE (eval.*, analysis.*, logging and checkpoint cadence,
  train.init_from, ...) and a different train.num_steps with the same schedule length; to
  extend a run, keep its schedule with --config.train.decay_steps=<its old num_steps>.
  """
  saved = _saved_config(workdir)
  if saved is None or not _has_checkpoints(workdir):
    return
  differences = config_differences(saved, config)
  if not differences:
    return
  hint = ''
  if any(d.startswith(f'config.{_HORIZON}') for d in differences):
    old = decay_horizon(saved['train'])
    hint = (f' To extend the run with its schedule unchanged (the learning rate stays at its '
            f'final value past step {old}), add --config.train.decay_steps={old}.')
  raise ValueError(
      f'{workdir} holds checkpoints of a run computed under another config '
      f'({"; ".join(differences)}), so resuming would not continue that run.{hint} Otherwise '
      'use the old values, a new --workdir, or start this workdir afresh with '
      'train.train(config, workdir, restart=True) (the old outputs move to '
      f'{SUPERSEDED_DIR}/).')


def save_config(config, workdir: str, extra: dict | None = None) -> None:
  """Writes the resolved config (plus `extra` top-level entries) to <workdir>/config.json."""
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  content = json.loads(config.to_json_best_effort())
  content.update(extra or {})
  text = json.dumps(content, indent=2, sort_keys=True)
  path = epath.Path(workdir) / 'config.json'
  if not workdir_lib.is_local(workdir):
    path.write_text(text)    # One object write: atomic by itself.
    return
  temporary = path.with_name(f'config.json.{os.getpid()}.tmp')
  temporary.write_text(text)
  temporary.replace(path)


def record_history(config, workdir: str, event: str, step: int, extra: dict | None = None
                   ) -> None:
  """Appends the config a run now trains under to <workdir>/config_history.jsonl.

  A workdir trained before the history existed first gets its config.json recorded, so every
  config a workdir has run under stays on file.
  """
  path = epath.Path(workdir) / HISTORY_FILE
  if not path.exists():
    saved = _saved_config(workdir)
    if saved is not None:
      workdir_lib.append_jsonl(path, {'event': 'recorded from config.json', 'config': saved})
  workdir_lib.append_jsonl(path, {
      'event': event, 'step': step, 'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
      'host': socket.gethostname(), 'pid': os.getpid(),
      'config': dict(json.loads(config.to_json_best_effort()), **(extra or {}))})


def supersede(workdir: str) -> str | None:
  """Moves a workdir's training outputs to <workdir>/superseded/<time>/; returns that folder.

  Used to start a workdir afresh without losing anything: checkpoints, metrics, TensorBoard
  events, members/, eval/ and analysis outputs, and a copy of config.json move; the config
  history stays (and records the restart).
  """
  root = epath.Path(workdir)
  names = [n for n in (CHECKPOINT_DIR, METRICS_FILE, MEMBERS_DIR, 'eval', 'analysis',
                       'analysis_paper') if (root / n).exists()]
  names += sorted(p.name for p in root.iterdir() if p.name.startswith('events.out.tfevents.'))
  if not names:
    return None
  stamp = time.strftime('%Y%m%d-%H%M%S')
  while (root / SUPERSEDED_DIR / stamp).exists():
    stamp += '_'
  target = root / SUPERSEDED_DIR / stamp
  target.mkdir(parents=True)
  for name in names:
    (root / name).rename(target / name)
  if (root / 'config.json').exists():
    (root / 'config.json').copy(target / 'config.json')
  return os.fspath(target)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved in its workdir."""
  saved = _saved_config(workdir)
  if saved is None:
    raise FileNotFoundError(f'{epath.Path(workdir) / "config.json"}: not a training workdir '
                            '(no config.json)')
  saved.pop('initialised_from', None)
  return ml_collections.ConfigDict(saved)


def load_trained(config, workdir: str, member: int | None = None
                 ) -> tuple[rnn.Network, TrainState]:
  """The network of a run and its latest checkpointed state; reads only, creates nothing.

  For an ensemble, `member` selects one member's state (no member axis); None returns the
  stacked ensemble state.
  """
  if not _has_checkpoints(workdir):
    raise FileNotFoundError(f'no checkpoint in {epath.Path(workdir) / CHECKPOINT_DIR}; '
                            'train first (--mode=train)')
  built = build(config, behaviour_model=False)
  template = init_states(built, member_seeds(config))
  manager = checkpoint_manager(workdir, config.train, read_only=True)
  try:
    state = restore_latest(manager, template)
  finally:
    manager.close()
  if state is None:
    raise FileNotFoundError(f'no checkpoint in {epath.Path(workdir) / CHECKPOINT_DIR}; '
                            'train first (--mode=train)')
  if member is not None and ensemble_size(config) > 1:
    if not 0 <= member < ensemble_size(config):
      raise ValueError(f'member {member} is outside the ensemble of '
                       f'{ensemble_size(config)} in {workdir}')
    state = member_slice(state, member)
  return built.network, state


def _shape_differences(expected, found) -> list[str]:
  """'path: found -> expected' for every leaf whose shape differs (or is missing)."""
  flat_expected = {jax.tree_util.keystr(p): np.shape(v)
                   for p, v in jax.tree_util.tree_leaves_with_path(expected)}
  flat_found = {jax.tree_util.keystr(p): np.shape(v)
                for p, v in jax.tree_util.tree_leaves_with_path(found)}
  return [f'{path}: {flat_found.get(path, "missing")} -> {flat_expected.get(path, "missing")}'
          for path in sorted(set(flat_expected) | set(flat_found))
          if flat_expected.get(path) != flat_found.get(path)]


def initialise_from(config, state: TrainState, tx: optax.GradientTransformation
                    ) -> tuple[TrainState, dict]:
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
  source_dir = os.fspath(_absolute(config.train.init_from))
  source_config = load_run_config(source_dir)
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
    if ensemble_size(config) != 1 or not 0 <= member < source_size or source_size == 1:
      fields.append(f'config.train.init_member={member}: needs a source ensemble of more than '
                    f'one member (it has {source_size}) and a single run here (ensemble_size '
                    f'{ensemble_size(config)}), with 0 <= init_member < {source_size}')
  elif source_size != ensemble_size(config):
    fields.append(f"config.train.ensemble_size: {source_size!r} (source) vs "
                  f'{ensemble_size(config)!r} (or set config.train.init_member to start a '
                  'single run from one member)')
  try:
    _, source_state = load_trained(source_config, source_dir,
                                   member=member if member >= 0 and not fields else None)
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
  opt_state = (jax.vmap(tx.init)(source_state.params) if ensemble_size(config) > 1
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
  init_state = TrainState(step=jnp.zeros_like(state.step), params=source_state.params,
                          constants=source_state.constants, opt_state=opt_state)
  record = {'workdir': source_dir, 'step': step.tolist(), 'member': member if member >= 0 else None,
            'objective': source_config.objective.name,
            'behaviour': source_config.behaviour.to_dict(), 'optimiser_carried': carried}
  return init_state, record



@dataclasses.dataclass(frozen=True)
class LossWatch:
  """Per member: the running loss level and how many steps in a row the loss was far above it.

  level: (E,) exponential moving average of the losses that were not far above it, over about
    config.train.divergence_window steps (NaN before the first step).
  streak: (E,) consecutive steps with loss > level + divergence_factor * |level|.
  """
  level: np.ndarray
  streak: np.ndarray


def new_loss_watch(num_members: int) -> LossWatch:
  return LossWatch(level=np.full(num_members, np.nan), streak=np.zeros(num_members, int))


def watch_loss(watch: LossWatch, losses, active, train_config
               ) -> tuple[LossWatch, np.ndarray, np.ndarray]:
  """One step of divergence detection: (watch, far_above, diverged), each (E,).

  A loss is far above its level when loss > level + factor * |level| (factor =
  config.train.divergence_factor; 0 disables the test); a member diverges after
  config.train.divergence_patience such steps in a row. Far-above losses do not move the
  level, so a divergence cannot drag its own reference up; inactive (frozen) members and
  non-finite losses (handled by the NaN check) leave the watch unchanged.
  """
  factor = float(train_config.get('divergence_factor', 100.0))
  patience = int(train_config.get('divergence_patience', 20))
  window = float(train_config.get('divergence_window', 100))
  losses = np.asarray(losses, np.float64).reshape(-1)
  use = np.asarray(active, bool).reshape(-1) & np.isfinite(losses)
  first = use & np.isnan(watch.level)
  level = np.where(first, losses, watch.level)
  far = use & ~first & (factor > 0) & (losses > level + factor * np.abs(level))
  streak = np.where(far, watch.streak + 1, np.where(use, 0, watch.streak))
  update = use & ~far & ~first
  level = np.where(update, level + (losses - level) / window, level)
  return LossWatch(level=level, streak=streak), far, streak >= patience


def _copy(state: TrainState) -> TrainState:
  """A copy of a (possibly sharded) state on its devices, safe from the step's donation."""
  return jax.tree_util.tree_map(jnp.copy, state)


def _roll_back(state: TrainState, snapshot, members) -> TrainState:
  """`state` with the given members' entries replaced by theirs in `snapshot`."""
  keep = np.zeros(jax.tree_util.tree_leaves(state)[0].shape[0], bool)
  keep[np.asarray(members)] = True

  def roll(now, old):
    return jnp.where(keep.reshape((-1,) + (1,) * (now.ndim - 1)), old, now)

  return jax.tree_util.tree_map(roll, state, snapshot)


def _writers(workdir: str, num_members: int, start: int) -> list[metric_writers.MetricWriter]:
  """Metric writers: one for a run; for an ensemble one per member, whose TensorBoard events go
  to members/member_<i>/ (so TensorBoard overlays the members as runs) and whose records go to
  the run's metrics.jsonl with a 'member' field, plus the member's own metrics.jsonl copy."""
  if num_members == 1:
    return [metric_writers.MetricWriter(workdir, resume_step=start)]
  writers = []
  for i in range(num_members):
    writers.append(metric_writers.MetricWriter(
        os.fspath(epath.Path(workdir) / MEMBERS_DIR / f'member_{i}'), resume_step=start))
  return writers


def _message_step(metrics, member: int | None) -> dict:
  metrics = jax.device_get(metrics)
  if member is None:
    return {k: float(v) for k, v in metrics.items()}
  return {k: float(np.asarray(v)[member]) for k, v in metrics.items()}


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
    superseded = supersede(workdir) if restart and chief else None
    if superseded:
      logging.warning('Starting %s afresh; its previous outputs moved to %s.', workdir,
                      superseded)
    check_resumable(config, workdir)
    return _train_locked(config, workdir, 'restart' if superseded else None, monitor)


def run_mesh(config):
  """The mesh config.parallel asks for on the visible devices; None when that is one device."""
  mesh = parallel.make_mesh(config)
  return None if mesh.size == 1 else mesh


def place(state: TrainState, built: Built, num_members: int) -> TrainState:
  """`state` (host or single-device arrays) laid out on the built step's mesh, if any."""
  if built.mesh is None:
    return state
  shardings = parallel.state_sharding(built.mesh, state, num_members)
  return jax.jit(lambda s: s, out_shardings=shardings)(to_host(state))


def _train_locked(config, workdir: str, event: str | None, monitor=None) -> TrainState:
  built = build(config, workdir, mesh=run_mesh(config))
  seeds = member_seeds(config)
  chief = parallel.is_chief()
  num_members = len(seeds)
  state = init_states(built, seeds)

  manager = checkpoint_manager(workdir, config.train)
  try:
    restored = restore_latest(manager, state,
                              broken_to=epath.Path(workdir) / BROKEN_CHECKPOINTS_DIR)
  except ValueError:
    manager.close()
    raise
  extra = {}
  previous = _saved_config(workdir) or {}
  if restored is not None:
    state = restored
    extra = {k: v for k, v in previous.items() if k == 'initialised_from'}
    logging.info('Resumed from checkpoint at step %d in %s.', int(np.max(state.step)), workdir)
  elif config.train.get('init_from', ''):
    state, source_record = initialise_from(config, state, built.tx)
    state = place(state, built, num_members)
    extra = {'initialised_from': source_record}
    logging.info('Initialised from %s (its step %s); optimiser %s.', source_record['workdir'],
                 source_record['step'],
                 'carried over' if source_record['optimiser_carried'] else 'fresh')
  steps = to_host(state.step).reshape(-1)
  start = int(np.max(steps))
  if chief:
    record_history(config, workdir, event or ('resume' if restored is not None else 'start'),
                   start, extra)
    save_config(config, workdir, extra)
    for path in _metric_files(workdir):
      _truncate_metrics(path, start)

  step_fn = train_step_fn(built, seeds)
  c = config.train
  num_params = sum(p.size for p in jax.tree_util.tree_leaves(state.params))
  logging.info('Training %s cell, %d units, %d parameters%s, %d displays x %d samples per step.',
               config.model.cell, config.model.num_units, num_params,
               f' ({num_members} members, seeds {seeds})' if num_members > 1 else '',
               c.displays_per_batch, c.samples_per_display)
  if built.mesh is not None:
    logging.info('Devices: %d (%s) in a mesh of %s over %d process(es).', built.mesh.size,
                 built.mesh.devices.flat[0].platform, dict(built.mesh.shape),
                 jax.process_count())
  if start > c.num_steps:     # Not "training: 20/10 steps": say that there is nothing to do.
    progress.say(f'training: nothing to do: the run in {workdir} is already at step {start}, '
                 f'past config.train.num_steps={c.num_steps}; to train on, pass '
                 f'--config.train.num_steps above {start}.')
    manager.close()
    return state
  checkpoints = os.fspath(epath.Path(workdir) / CHECKPOINT_DIR)
  writers = _writers(workdir, num_members, start) if chief else []
  reporter = progress.ProgressReporter(c.num_steps, 'training', start=start)
  # The last saved state (a copy on the devices), to roll a diverging member back to.
  snapshot = _copy(state) if num_members > 1 else None
  snapshot_steps = steps
  alive = steps == start
  watch = new_loss_watch(num_members)
  last_time, last_step, save_due = time.time(), start, False
  try:
    for step in range(start, c.num_steps):
      new_state, metrics, finite = step_fn(state)
      finite, losses = jax.device_get((finite, metrics['loss']))
      finite, losses = np.asarray(finite).reshape(-1), np.asarray(losses).reshape(-1)
      done = step + 1
      watch, far, diverged = watch_loss(watch, losses, alive & finite, c)
      if num_members == 1 and not (finite[0] and not diverged[0]):
        manager.wait_until_finished()
        kept = _kept_checkpoint(manager, checkpoints)
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
      state = new_state
      if num_members > 1:
        for i in np.flatnonzero(alive & ~finite):
          logging.warning('Ensemble member %d (seed %d) has non-finite metrics at step %d: it '
                          'is stopped at its last good state (step %d); the others go on.', i,
                          seeds[i], done, step)
        rolled = np.flatnonzero(alive & finite & diverged)
        if rolled.size:
          state = _roll_back(state, snapshot, rolled)
        for i in rolled:
          logging.warning(
              'Ensemble member %d (seed %d) diverged at step %d (loss %.4g, %d steps above '
              '%g x its running level %.4g): it is rolled back to its last saved state (step '
              '%d) and stopped there; the others go on.', i, seeds[i], done, losses[i],
              watch.streak[i], c.get('divergence_factor', 100.0), watch.level[i],
              int(snapshot_steps[i]))
        alive &= finite & ~diverged
        if not alive.any():
          manager.wait_until_finished()
          raise TrainingDiverged(
              f'every ensemble member diverged by step {done}; '
              f'{_kept_checkpoint(manager, checkpoints)}. Lower config.train.learning_rate or '
              'set config.train.grad_clip.')
      live_loss = float(np.mean(losses[alive]))
      reporter.update(done, loss=live_loss, **({'live_members': int(alive.sum())}
                                               if num_members > 1 else {}))
      if done % c.log_every == 0 or done == c.num_steps:
        now = time.time()
        rate = (done - last_step) / max(now - last_time, 1e-9)
        last_time, last_step = now, done
        values = jax.device_get(metrics)
        if num_members == 1 and writers:
          writers[0].write_scalars(done, {**values, 'steps_per_s': rate})
        for i, writer in enumerate(writers if num_members > 1 else []):
          scalars = {k: np.asarray(v)[i] for k, v in values.items()}
          writer.write_scalars(done, {**scalars, 'steps_per_s': rate})
          _append_member_record(workdir, done, i, scalars, rate)
      save_due = save_due or done % c.checkpoint_every == 0
      learned = (monitor is not None and (done % monitor.every == 0 or done == c.num_steps)
                 and monitor(done, state.variables))
      # No checkpoint while a live loss is far above its level: it may be diverging.
      if done == c.num_steps or learned or (save_due and not (far & alive).any()):
        level = float(np.nanmean(np.where(alive, watch.level, np.nan)))
        manager.save(done, args=ocp.args.StandardSave(state),
                     metrics={'loss_level': level} if np.isfinite(level) else None)
        save_due = False
        if num_members > 1:
          snapshot, snapshot_steps = _copy(state), to_host(state.step)
      if learned:
        logging.info('Learning criterion met at step %d: training stops here.', done)
        break
    manager.wait_until_finished()
  finally:
    # Closing waits at a barrier for every process: not for a dead one (main.py exits at once).
    if parallel.peer_failure(sys.exc_info()[1]) is None:
      manager.close()
    reporter.close()
    for writer in writers:
      writer.close()
  return state


def _kept_checkpoint(manager: ocp.CheckpointManager, directory: str) -> str:
  """Where the last good state is, in words, for the message of a stopped run."""
  step = manager.latest_step()
  if step is None:
    return 'it diverged before its first checkpoint, so none was written'
  return f'the last good checkpoint (step {step}) is kept in {directory}'


def _append_member_record(workdir: str, step: int, member: int, scalars: dict,
                          rate: float) -> None:
  """One ensemble member's record in the run's metrics.jsonl (format: step, member, metrics)."""
  record = {'step': int(step), 'member': int(member),
            **{k: float(v) for k, v in scalars.items()}, 'steps_per_s': float(rate)}
  workdir_lib.append_jsonl(epath.Path(workdir) / METRICS_FILE, record, sort_keys=False)
