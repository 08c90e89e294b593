"""The build seam and the jitted train step (METHOD sec. 5).

`build(config, workdir)` turns a config into pure functions (`init`, `train_step`,
`sample_batch`) and the sampling seam (`sample`, a `sampling.Sampler`); `train_step_fn` gives the
jitted step the loop in train.py runs.

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
from typing import Any, Callable

import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import optax

from rnn_behaviour import objectives
from rnn_behaviour import parallel
from rnn_behaviour import rnn
from rnn_behaviour import sampling
from rnn_behaviour import task as task_lib
from rnn_behaviour.behaviour import source


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
  sample_batch(key) -> objectives.Batch; sample, the seam (`sampling.Sampler`):
  sample(variables, displays, key, num_samples) -> responses (K, S) of the free-running
  network. None is jitted; `train_step_fn` below gives
  the jitted (and, for ensembles, vmapped) step the loop runs.
  """
  config: Any
  network: rnn.Network
  tx: optax.GradientTransformation
  behaviour_model: Any
  init: Callable
  train_step: Callable
  sample_batch: Callable
  sample: sampling.Sampler
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

  return Built(config=config, network=network, tx=tx, behaviour_model=behaviour_model,
               init=init,
               train_step=make_train_step(loss_fn, tx, _num_chunks(config.train), mesh),
               sample_batch=sample_batch, sample=sampling.make_sampler(config, network), mesh=mesh)


def init_states(built: Built, seeds) -> TrainState:
  """Initial state of one run (one seed: no member axis) or of an ensemble (stacked).

  The initialiser is jitted: one program instead of Flax's init op by op, each op compiling on
  its own (3 s against 0.6 s for the tiny config on CPU). With a mesh the state is created on
  it (replicated, or split along the member axis), so that every process of a multi-process job
  holds its part of one global state.
  """
  def initial():
    if len(seeds) == 1:
      return built.init(root_keys(seeds[0])[0])
    return stack_members([built.init(root_keys(s)[0]) for s in seeds])

  if built.mesh is None:
    return jax.jit(initial)()
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


def to_host(tree):
  """numpy copies of a pytree of (possibly sharded, possibly multi-process) arrays."""
  def fetch(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)
  return jax.tree_util.tree_map(fetch, tree)
