"""Training: state creation, the jitted train step, and the loop with checkpoints and metrics.

Randomness is a pure function of (config.seed, step): the batch of step s is drawn with
fold_in(data_key, s) and its noise with fold_in(noise_key, s). A run resumed from a checkpoint
at step s therefore continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
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


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


SHAPE_SECTIONS = ('model', 'task')   # Config sections that fix the shapes in a checkpoint.


def check_resumable(config, workdir: str) -> None:
  """Fails, naming the fields, if `workdir` holds checkpoints of a differently shaped run."""
  path = os.path.join(workdir, 'config.json')
  checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
  if not (os.path.exists(path) and os.path.isdir(checkpoints)
          and any(name.isdigit() for name in os.listdir(checkpoints))):
    return
  with open(path) as f:
    saved = json.load(f)
  differences = []
  for section in SHAPE_SECTIONS:
    now = json.loads(config[section].to_json_best_effort())
    before = saved.get(section, {})
    differences += [f'config.{section}.{k}: {before.get(k)!r} -> {now.get(k)!r}'
                    for k in sorted(set(now) | set(before)) if now.get(k) != before.get(k)]
  if differences:
    raise ValueError(f'{workdir} holds checkpoints of a run with another network or task '
                     f'({"; ".join(differences)}); use a new --workdir or the old values')


def save_config(config, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def load_trained(config, workdir: str) -> tuple[rnn.Network, TrainState]:
  """The network of a run and its latest checkpointed state."""
  network = rnn.make_network(config)
  tx = make_optimizer(config.train)
  template = create_train_state(config, network, tx, root_keys(config.seed)[0])
  manager = checkpoint_manager(workdir, config.train)
  state = restore_latest(manager, template)
  manager.close()
  if state is None:
    raise FileNotFoundError(f'no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}; '
                            'train first (--mode=train)')
  return network, state


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains, resuming from the latest checkpoint in `workdir` if there is one."""
  config_validation.validate(config)
  check_resumable(config, workdir)
  save_config(config, workdir)
  init_key, data_key, noise_key = root_keys(config.seed)
  network = rnn.make_network(config)
  behaviour_model = source.training_model_from_config(config, workdir)
  tx = make_optimizer(config.train)
  loss_fn = objectives.make_loss_fn(config, network)
  state = create_train_state(config, network, tx, init_key)

  manager = checkpoint_manager(workdir, config.train)
  try:
    restored = restore_latest(manager, state)
  except ValueError:
    manager.close()
    raise
  metrics_path = os.path.join(workdir, METRICS_FILE)
  if restored is not None:
    state = restored
    logging.info('Resumed from checkpoint at step %d in %s.', int(state.step), workdir)
  _truncate_metrics(metrics_path, int(state.step))

  sample_batch = jax.jit(lambda key: objectives.sample_batch(key, config, behaviour_model))
  train_step = jax.jit(make_train_step(loss_fn, tx, _num_chunks(config.train)),
                       donate_argnums=(0,))
  c = config.train
  num_params = sum(p.size for p in jax.tree_util.tree_leaves(state.params))
  logging.info('Training %s cell, %d units, %d parameters, %d displays x %d samples per step.',
               config.model.cell, config.model.num_units, num_params, c.displays_per_batch,
               c.samples_per_display)
  start = int(state.step)
  last_time, last_step = time.time(), start
  for step in range(start, c.num_steps):
    batch = sample_batch(jax.random.fold_in(data_key, step))
    new_state, metrics = train_step(state, batch, jax.random.fold_in(noise_key, step))
    metrics = jax.device_get(metrics)
    if not all(jnp.isfinite(v) for v in metrics.values()):
      manager.wait_until_finished()
      kept = manager.latest_step()
      manager.close()
      raise FloatingPointError(
          f'non-finite training metrics at step {step + 1}: '
          f'{ {k: float(v) for k, v in metrics.items()} }. Training stopped; the last good '
          f'checkpoint (step {kept}) is kept in {os.path.join(workdir, CHECKPOINT_DIR)}. '
          'Lower config.train.learning_rate or set config.train.grad_clip.')
    state = new_state
    done = step + 1
    if done % c.log_every == 0 or done == c.num_steps:
      now = time.time()
      rate = (done - last_step) / max(now - last_time, 1e-9)
      last_time, last_step = now, done
      record = {'step': done, **{k: float(v) for k, v in metrics.items()},
                'steps_per_s': rate}
      with open(metrics_path, 'a') as f:
        f.write(json.dumps(record) + '\n')
      parts = '  '.join(f'{k} {float(v):.5g}' for k, v in sorted(metrics.items()))
      logging.info('step %d/%d  %s  %.2f steps/s', done, c.num_steps, parts, rate)
    if done % c.checkpoint_every == 0 or done == c.num_steps:
      manager.save(done, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  manager.close()
  return state
