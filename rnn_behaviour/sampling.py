"""The seam: how everything samples a trained network (METHOD secs. 4 and 5).

A `Sampler` is the network with the task that feeds it. Called as

  sample(variables, displays, key, num_samples)               -> responses (K, S)
  sample(variables, displays, key, num_samples, record=True)  -> (responses (K, S),
                                                                   trajectory (T_all, K, S, n))

it builds each display's epoch inputs (`task.epoch_inputs_from_config`) and runs the whole trial
freely with its noise; the onset rule and the noise levels are the network's own
(`rnn.make_network`). Responses are angles in [-pi, pi); trajectories are time-major over every
step of the trial and the response (`Network.epochs.total_steps` rows).

Evaluation, both analyses, the moment-matching and free-running objectives, the learning
criterion, the lab report, notebooks and benchmarks all sample through it; nothing else calls
`Network.sample`. Ensembles (variables with a leading member axis) sample in one vmapped call
(`members`), and `chunked` bounds memory by running a chunk of displays at a time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from rnn_behaviour import progress
from rnn_behaviour import rnn
from rnn_behaviour import task as task_lib


def _stacked_keys(key) -> bool:
  """Whether `key` holds one key per member (a typed key array with an axis, or raw uint32
  keys of shape (E, 2))."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key.ndim > 0
  return key.ndim > 1


@dataclasses.dataclass(frozen=True, eq=False)
class Sampler:
  """The network a config builds and the task config that turns displays into its inputs."""
  network: rnn.Network
  task_config: Any

  def epoch_inputs(self, displays):
    """(E, K, input_size) inputs of every epoch for the K displays; epoch inputs pass as
    they are."""
    if isinstance(displays, task_lib.Displays):
      return task_lib.epoch_inputs_from_config(displays, self.task_config)
    return displays

  def __call__(self, variables, displays, key, num_samples: int, record: bool = False):
    """S free-running responses a display: (K, S), and with `record` the trajectory too.

    `displays`: K `task.Displays`, or their epoch inputs (E, K, input_size) already built.
    """
    responses, trajectory = self.network.sample(variables, self.epoch_inputs(displays), key,
                                                num_samples, record=record)
    return (responses, trajectory) if record else responses

  def members(self, variables, displays, key, num_samples: int, record: bool = False):
    """Every member of an ensemble at once: `variables` carry a leading member axis (E, ...);
    `key` is shared by all members or stacked, one a member. Returns (E, K, S) responses and
    with `record` the (E, T_all, K, S, n) trajectories."""
    key_axis = 0 if _stacked_keys(key) else None
    return jax.vmap(lambda v, k: self(v, displays, k, num_samples, record),
                    in_axes=(0, key_axis))(variables, key)

  def chunked(self, variables, displays: task_lib.Displays, key, num_samples: int,
              displays_per_chunk: int, record: bool = False, members: bool = False,
              what: str | None = None):
    """`__call__` (or `members`) a chunk of displays at a time, to bound memory.

    Chunk i holds displays [i C, (i + 1) C) and draws with fold_in(key, i); one jitted program
    serves every chunk. With `what`, progress over the chunks is reported under that name.
    Returns what one call on all the displays returns, concatenated along the display axis.
    """
    draw = self.members if members else self.__call__
    # The variables are the program's constants (as evaluation always compiled them: passing
    # them as arguments changes the float rounding of the draws).
    run = jax.jit(lambda chunk, k: draw(variables, chunk, k, num_samples, record))
    display_axis = 1 if members else 0
    starts = range(0, displays.num_displays, displays_per_chunk)
    reporter = progress.ProgressReporter(len(starts), what, unit='chunk') if what else None
    fold = jax.vmap(jax.random.fold_in, (0, None)) if _stacked_keys(key) else jax.random.fold_in
    outputs = []
    for i, start in enumerate(starts):
      out = run(displays[start:start + displays_per_chunk], fold(key, i))
      outputs.append(jax.block_until_ready(out))
      if reporter:
        reporter.update(i + 1)
    if reporter:
      reporter.close()
    if not record:
      return jnp.concatenate(outputs, axis=display_axis)
    responses, trajectories = zip(*outputs)
    return (jnp.concatenate(responses, axis=display_axis),
            jnp.concatenate(trajectories, axis=display_axis + 1))


def make_sampler(config, network: rnn.Network | None = None) -> Sampler:
  """The seam of a config: its network (built here unless given) and its task."""
  return Sampler(network=network if network is not None else rnn.make_network(config),
                 task_config=config.task)
