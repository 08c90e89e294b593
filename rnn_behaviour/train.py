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
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from rnn_behaviour import config_validation
from rnn_behaviour import objectives
from rnn_behaviour import rnn
from rnn_behaviour import task as task_lib
from rnn_behaviour.behaviour import source

METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any
  constants: Any          # The fixed readout; saved with the run, never trained.
  opt_state: Any

  @property
  def variables(self):
    return {'params': self.params, 'constants': self.constants}


def root_keys(seed: int):
  """(init_key, data_key, noise_key) of a run."""
  return tuple(jax.random.split(jax.random.key(seed), 3))


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Adam after global-norm clipping, linear warmup then cosine decay to a tenth."""
  c = train_config
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=c.learning_rate, warmup_steps=c.warmup_steps,
      decay_steps=max(c.num_steps, c.warmup_steps + 1), end_value=0.1 * c.learning_rate)
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
                    num_chunks: int = 1) -> Callable:
  """train_step(state, batch, key) -> (state, metrics), pure and unjitted.

  With num_chunks > 1 the displays are processed a chunk at a time and the gradients averaged,
  which bounds memory (and keeps intermediates in cache) at no change to the result beyond
  the per-display statistics being computed chunk by chunk.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def compute_grads(params, constants, batch, key):
    if num_chunks == 1:
      (_, metrics), grads = grad_fn(params, constants, batch, key)
      return grads, metrics

    def accumulate(total, inputs):
      chunk, k = inputs
      (_, metrics), grads = grad_fn(params, constants, chunk, k)
      return jax.tree_util.tree_map(jnp.add, total, (grads, metrics)), None

    chunks = _split_chunks(batch, num_chunks)
    first_chunk = jax.tree_util.tree_map(lambda a: a[0], chunks)
    _, metric_shapes = jax.eval_shape(grad_fn, params, constants, first_chunk, key)[0]
    zeros = (jax.tree_util.tree_map(jnp.zeros_like, params),
             jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes))
    keys = jax.random.split(key, num_chunks)
    total, _ = jax.lax.scan(accumulate, zeros, (chunks, keys))
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


def build(config, workdir: str | None = None, behaviour_model=None) -> Built:
  """The seam: config -> network, optimiser and pure init/step/batch/sample functions."""
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
               init=init, train_step=make_train_step(loss_fn, tx, _num_chunks(config.train)),
               sample_batch=sample_batch, sample=sample)


def init_states(built: Built, seeds) -> TrainState:
  """Initial state of one run (one seed: no member axis) or of an ensemble (stacked)."""
  if len(seeds) == 1:
    return built.init(root_keys(seeds[0])[0])
  return stack_members([built.init(root_keys(s)[0]) for s in seeds])


def step_keys(seeds, step: int):
  """(data keys, noise keys) of training step `step` for each seed, stacked if several."""
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


def train_step_fn(built: Built, num_members: int) -> Callable:
  """The jitted step the loop runs: (state, data_key, noise_key) -> (state, metrics, finite).

  One run: sample a batch and take a step. Ensemble: the same, vmapped over the member axis of
  state and keys; a member whose metrics are not finite, or that is already frozen (its step
  behind the others'), keeps its old state.
  """

  def single(state, data_key, noise_key):
    batch = built.sample_batch(data_key)
    new_state, metrics = built.train_step(state, batch, noise_key)
    return new_state, metrics, _all_finite(metrics)

  if num_members == 1:
    return jax.jit(single, donate_argnums=(0,))

  def ensemble(state, data_keys, noise_keys):
    alive = state.step == jnp.max(state.step)
    new_state, metrics, finite = jax.vmap(single)(state, data_keys, noise_keys)
    keep = alive & finite

    def choose(new, old):
      return jnp.where(keep.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    return jax.tree_util.tree_map(choose, new_state, state), metrics, keep

  return jax.jit(ensemble, donate_argnums=(0,))


def checkpoint_manager(workdir: str, train_config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=train_config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
                               options=options)


def restore_latest(manager: ocp.CheckpointManager, template: TrainState) -> TrainState | None:
  step = manager.latest_step()
  if step is None:
    return None
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(
        f'the checkpoint at step {step} in {manager.directory} does not fit this config\'s '
        'network (was the workdir trained with another model or task config? see its '
        f'config.json); use a new --workdir. Orbax said: {error}') from error


def _truncate_metrics(path: str, last_step: int) -> None:
  """Drops metric lines past a restored step, so a resumed run's log has no duplicates."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [line for line in f if line.strip() and json.loads(line)['step'] <= last_step]
  with open(path, 'w') as f:
    f.writelines(lines)


def read_metrics(workdir: str, member: int | None = None) -> list[dict]:
  """The metric records of a run; for an ensemble, those of one member (None: all)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  if member is None:
    return records
  return [r for r in records if r.get('member', 0) == member]


SHAPE_SECTIONS = ('model', 'task')   # Config sections that fix the shapes in a checkpoint.


def _saved_config(workdir: str) -> dict | None:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _has_checkpoints(workdir: str) -> bool:
  checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
  return os.path.isdir(checkpoints) and any(n.isdigit() for n in os.listdir(checkpoints))


def check_resumable(config, workdir: str) -> None:
  """Fails, naming the fields, if `workdir` holds checkpoints of a differently shaped run."""
  saved = _saved_config(workdir)
  if saved is None or not _has_checkpoints(workdir):
    return
  differences = []
  for section in SHAPE_SECTIONS:
    now = json.loads(config[section].to_json_best_effort())
    before = saved.get(section, {})
    differences += [f'config.{section}.{k}: {before.get(k)!r} -> {now.get(k)!r}'
                    for k in sorted(set(now) | set(before)) if now.get(k) != before.get(k)]
  before_size = saved.get('train', {}).get('ensemble_size', 1)
  if before_size != ensemble_size(config):
    differences.append(f'config.train.ensemble_size: {before_size!r} -> '
                       f'{ensemble_size(config)!r}')
  if differences:
    raise ValueError(f'{workdir} holds checkpoints of a run with another network or task '
                     f'({"; ".join(differences)}); use a new --workdir or the old values')


def save_config(config, workdir: str, extra: dict | None = None) -> None:
  """Writes the resolved config (plus `extra` top-level entries) to <workdir>/config.json."""
  os.makedirs(workdir, exist_ok=True)
  content = json.loads(config.to_json_best_effort())
  content.update(extra or {})
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump(content, f, indent=2, sort_keys=True)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved in its workdir."""
  saved = _saved_config(workdir)
  if saved is None:
    raise FileNotFoundError(f'{os.path.join(workdir, "config.json")}: not a training workdir '
                            '(no config.json)')
  saved.pop('initialised_from', None)
  return ml_collections.ConfigDict(saved)


def load_trained(config, workdir: str, member: int | None = None
                 ) -> tuple[rnn.Network, TrainState]:
  """The network of a run and its latest checkpointed state.

  For an ensemble, `member` selects one member's state (no member axis); None returns the
  stacked ensemble state.
  """
  built = build(config, behaviour_model=False)
  template = init_states(built, member_seeds(config))
  manager = checkpoint_manager(workdir, config.train)
  state = restore_latest(manager, template)
  manager.close()
  if state is None:
    raise FileNotFoundError(f'no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}; '
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
  learned with that readout); the optimiser starts fresh and the step at 0. Shapes must match
  (same network, task inputs and ensemble size), else a ValueError names the differing
  parameters and config fields.

  Returns the new state and a record of the source for config.json.
  """
  source_dir = os.path.abspath(config.train.init_from)
  source_config = load_run_config(source_dir)
  fields = []
  for section in SHAPE_SECTIONS:
    for key in ('num_units', 'cell', 'num_branches', 'num_subbranches', 'time_embedding_size',
                'num_items', 'num_tuning', 'cueing'):
      if key in config[section] and source_config[section].get(key) != config[section][key]:
        fields.append(f'config.{section}.{key}: {source_config[section].get(key)!r} (source) vs '
                      f'{config[section][key]!r}')
  if source_config.train.get('ensemble_size', 1) != ensemble_size(config):
    fields.append(f"config.train.ensemble_size: {source_config.train.get('ensemble_size', 1)!r} "
                  f'(source) vs {ensemble_size(config)!r}')
  try:
    _, source_state = load_trained(source_config, source_dir)
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
  init_state = TrainState(step=jnp.zeros_like(state.step), params=source_state.params,
                          constants=source_state.constants,
                          opt_state=jax.vmap(tx.init)(source_state.params)
                          if ensemble_size(config) > 1 else tx.init(source_state.params))
  record = {'workdir': source_dir, 'step': step.tolist(),
            'objective': source_config.objective.name,
            'behaviour': source_config.behaviour.to_dict()}
  return init_state, record


def _metric_records(step: int, metrics, rate: float, num_members: int) -> list[dict]:
  """One JSON record per member (one in all for a standalone run)."""
  metrics = jax.device_get(metrics)
  if num_members == 1:
    return [{'step': step, **{k: float(v) for k, v in metrics.items()}, 'steps_per_s': rate}]
  return [{'step': step, 'member': i, **{k: float(v[i]) for k, v in metrics.items()},
           'steps_per_s': rate} for i in range(num_members)]


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains, resuming from the latest checkpoint in `workdir` if there is one.

  A fresh run starts from config.train.init_from's final parameters when that is set.
  """
  config_validation.validate(config)
  check_resumable(config, workdir)
  built = build(config, workdir)
  seeds = member_seeds(config)
  num_members = len(seeds)
  state = init_states(built, seeds)

  manager = checkpoint_manager(workdir, config.train)
  try:
    restored = restore_latest(manager, state)
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
    extra = {'initialised_from': source_record}
    logging.info('Initialised from %s (its step %s); optimiser fresh.', source_record['workdir'],
                 source_record['step'])
  save_config(config, workdir, extra)
  start = int(np.max(state.step))
  metrics_path = os.path.join(workdir, METRICS_FILE)
  _truncate_metrics(metrics_path, start)

  step_fn = train_step_fn(built, num_members)
  c = config.train
  num_params = sum(p.size for p in jax.tree_util.tree_leaves(state.params))
  logging.info('Training %s cell, %d units, %d parameters%s, %d displays x %d samples per step.',
               config.model.cell, config.model.num_units, num_params,
               f' ({num_members} members, seeds {seeds})' if num_members > 1 else '',
               c.displays_per_batch, c.samples_per_display)
  last_time, last_step = time.time(), start
  alive = np.ones(num_members, bool)
  for step in range(start, c.num_steps):
    data_key, noise_key = step_keys(seeds, step)
    new_state, metrics, finite = step_fn(state, data_key, noise_key)
    finite = np.asarray(finite).reshape(-1)
    if num_members == 1 and not finite[0]:
      manager.wait_until_finished()
      kept = manager.latest_step()
      manager.close()
      raise FloatingPointError(
          f'non-finite training metrics at step {step + 1}: '
          f'{ {k: float(v) for k, v in jax.device_get(metrics).items()} }. Training stopped; '
          f'the last good checkpoint (step {kept}) is kept in '
          f'{os.path.join(workdir, CHECKPOINT_DIR)}. '
          'Lower config.train.learning_rate or set config.train.grad_clip.')
    state = new_state
    if num_members > 1:
      for i in np.flatnonzero(alive & ~finite):
        logging.warning('Ensemble member %d (seed %d) has non-finite metrics at step %d: it is '
                        'stopped at its last good state (step %d); the others go on.', i,
                        seeds[i], step + 1, step)
      alive &= finite
      if not alive.any():
        manager.close()
        raise FloatingPointError(f'every ensemble member diverged by step {step + 1}; lower '
                                 'config.train.learning_rate or set config.train.grad_clip.')
    done = step + 1
    if done % c.log_every == 0 or done == c.num_steps:
      now = time.time()
      rate = (done - last_step) / max(now - last_time, 1e-9)
      last_time, last_step = now, done
      records = _metric_records(done, metrics, rate, num_members)
      with open(metrics_path, 'a') as f:
        f.writelines(json.dumps(r) + '\n' for r in records)
      shown = records[0] if num_members == 1 else {
          k: float(np.mean([r[k] for r, a in zip(records, alive) if a]))
          for k in records[0] if k not in ('step', 'member', 'steps_per_s')}
      parts = '  '.join(f'{k} {v:.5g}' for k, v in sorted(shown.items())
                        if k not in ('step', 'steps_per_s'))
      logging.info('step %d/%d  %s%s  %.2f steps/s', done, c.num_steps, parts,
                   f'  (mean of {int(alive.sum())} live members)' if num_members > 1 else '',
                   rate)
    if done % c.checkpoint_every == 0 or done == c.num_steps:
      manager.save(done, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  manager.close()
  return state
