"""Devices and hosts: the mesh a run trains on, its shardings, and the multi-process runtime.

A run's devices form a 2-D `jax.sharding.Mesh` with axes ('members', 'displays'):
- 'displays' shards the display axis of every batch (data parallel). Gradients are averaged
  across it by the SPMD partitioner; the maths is the single-device maths, so any device count
  gives the same numbers to float tolerance (random draws use partitionable threefry, whose
  values do not depend on the sharding).
- 'members' shards an ensemble's member axis (config.train.ensemble_size): each device group
  trains its own members.
config.parallel chooses the shape:
  num_devices:  devices used (0: all visible; on many hosts, all of every host's).
  member_shards: size of the 'members' axis (divides ensemble_size; the rest go to 'displays').
With gradient accumulation (config.train.displays_per_chunk) chunks stay whole on a device:
the chunks are dealt to the display devices in contiguous blocks, each device scans over its
own, so the number of chunks must be a multiple of the display devices.

Many hosts: `initialize_distributed` wraps `jax.distributed.initialize` (explicit coordinator
flags, or JAX's auto-detection on Cloud TPU pods, Slurm and Open MPI). Every process runs the
same program on the global mesh; each computes (and so "feeds") only its devices' shards of the
batch, which is drawn on device from the step's key. Only process 0 writes files other than
checkpoints (`is_chief`); Orbax writes checkpoints collectively.

A peer that dies: JAX's coordination service declares a process dead when it has sent no
heartbeat for `heartbeat_timeout` seconds (jax.distributed.initialize's
heartbeat_timeout_seconds; JAX's default of 100 s is lowered to HEARTBEAT_TIMEOUT_S, 60 s: 10 s
was seen to time out a live process compiling on a loaded 2-core machine), and
`jax_enable_recoverability` lets the survivors go on long enough to report it: their next
collective raises (at once, from Gloo, when the dead peer's connection is reset; after the
heartbeat timeout at a barrier) instead of the service aborting them from C++.
`peer_failure(error)` recognises such an error; the training loop then skips its collective
checkpoint close, and main.py prints one line and exits at once with PEER_LOST_EXIT_CODE. A
rerun of the job resumes from its last checkpoint, which Orbax writes collectively (a step is
listed only once every process has finished writing it).
"""

from __future__ import annotations

import dataclasses
import os
import re

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import orbax.checkpoint as ocp

from rnn_behaviour import errors
from rnn_behaviour import workdir as workdir_lib

MEMBERS, DISPLAYS = 'members', 'displays'
HEARTBEAT_TIMEOUT_S = 60      # A peer silent this long is dead (JAX's default is 100 s).
SHUTDOWN_TIMEOUT_S = 30       # How long a finished process waits for the others at exit.
PEER_LOST_EXIT_CODE = 3       # Exit code of a process whose job lost a peer process.

# What the runtime says when another process of the job is gone: Gloo (CPU collectives) on a
# closed or reset connection, the coordination service on a missed heartbeat or a barrier that
# a dead task can no longer reach.
_PEER_FAILURE = re.compile(
    r'Gloo .*(connection (reset|closed|refused)|closed by peer|reset by peer)'
    r'|heartbeat timeout|stopped sending heartbeats|tasks are unhealthy'
    r'|task is set to ERROR|Barrier failed because.*(task|UNAVAILABLE)'
    r'|Connection reset by peer|NCCL .*(remote|peer)', re.IGNORECASE | re.DOTALL)


class ParallelConfigError(errors.UserError, ValueError):
  """config.parallel does not fit the devices or the batch."""


def is_chief() -> bool:
  """True on the process that writes metrics, configs, figures (process 0)."""
  return jax.process_index() == 0


def parallel_config(config) -> dict:
  """config.parallel with defaults for configs written before it existed."""
  section = config.get('parallel', None)
  get = (lambda k, d: section.get(k, d)) if section is not None else (lambda k, d: d)
  return {'num_devices': int(get('num_devices', 1)), 'member_shards': int(get('member_shards', 1)),
          'cpu_devices': int(get('cpu_devices', 0))}


def mesh_shape(config, num_available: int) -> tuple[int, int]:
  """(member shards, display shards) of a run on `num_available` devices; fails naming fields.

  Checks: num_devices <= available, member_shards divides both num_devices and the ensemble
  size, the display shards divide config.train.displays_per_batch and (with gradient
  accumulation) the number of chunks.
  """
  p = parallel_config(config)
  num_devices = p['num_devices'] or num_available
  if num_devices > num_available:
    raise ParallelConfigError(
        f'config.parallel.num_devices={num_devices} but only {num_available} devices are '
        f'visible ({jax.devices()[0].platform}); on a CPU, start with '
        f'XLA_FLAGS=--xla_force_host_platform_device_count={num_devices} or '
        f'--cpu_devices={num_devices}, or set config.parallel.num_devices=0 (all)')
  members = p['member_shards']
  ensemble = int(config.train.get('ensemble_size', 1))
  if members < 1 or num_devices % members:
    raise ParallelConfigError(f'config.parallel.member_shards={members} must be a positive '
                              f'divisor of the devices used ({num_devices})')
  if ensemble % members:
    raise ParallelConfigError(f'config.parallel.member_shards={members} must divide '
                              f'config.train.ensemble_size={ensemble}')
  displays = num_devices // members
  batch = int(config.train.displays_per_batch)
  if batch % displays:
    raise ParallelConfigError(
        f'config.train.displays_per_batch={batch} must be a multiple of the display shards '
        f'({displays} = {num_devices} devices / config.parallel.member_shards={members})')
  chunk = int(config.train.displays_per_chunk or 0)
  if chunk and (batch // chunk) % displays:
    raise ParallelConfigError(
        f'config.train.displays_per_batch / displays_per_chunk = {batch // chunk} chunks must '
        f'be a multiple of the display shards ({displays}) so that every chunk stays whole on '
        'one device')
  return members, displays


def validate(config) -> None:
  """Checks config.parallel's values that need no devices (types, ranges)."""
  p = config.get('parallel', None)
  if p is None:
    return
  for field in ('num_devices', 'member_shards', 'cpu_devices'):
    value = p.get(field, 0 if field == 'cpu_devices' else 1)
    minimum = 0 if field in ('num_devices', 'cpu_devices') else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
      raise ParallelConfigError(f'config.parallel.{field} must be an integer >= {minimum}, '
                                f'got {value!r}')


def make_mesh(config, devices=None) -> Mesh:
  """The run's ('members', 'displays') mesh over the first devices of `devices` (all)."""
  devices = list(jax.devices() if devices is None else devices)
  members, displays = mesh_shape(config, len(devices))
  return jax.make_mesh((members, displays), (MEMBERS, DISPLAYS),
                       axis_types=(AxisType.Auto, AxisType.Auto),
                       devices=devices[:members * displays])


def state_sharding(mesh: Mesh, state, num_members: int):
  """Shardings of a train state: replicated, or split along the member axis of an ensemble."""
  spec = P(MEMBERS) if num_members > 1 else P()
  return jax.tree_util.tree_map(lambda _: NamedSharding(mesh, spec), state)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_displays(tree, mesh: Mesh | None):
  """Constrains the leading axis of every leaf (displays, or the device blocks of a chunked
  step) to the mesh's 'displays' axis."""
  if mesh is None or mesh.shape[DISPLAYS] == 1:
    return tree
  return jax.tree_util.tree_map(
      lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, P(DISPLAYS))), tree)


def barrier(name: str) -> None:
  """Waits until every process of a multi-process job gets here (no-op in one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def leave_distributed() -> None:
  """The end of a finished multi-process job, in every process: waits until all get here, then
  leaves JAX's distributed runtime explicitly, together (its shutdown barrier), while the
  interpreter is whole. Left to the exit hooks, process 0 could stop the coordination service
  while another process was still tearing down, and that one aborted (exit -6). No-op in one
  process."""
  if jax.process_count() > 1:
    barrier('finished')
    jax.distributed.shutdown()


def single_process_options():
  """Orbax options for a checkpoint read by this process alone (e.g. evaluation on process 0
  of a multi-process job), so that Orbax waits for no other process."""
  me = jax.process_index()
  return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})


@dataclasses.dataclass(frozen=True)
class Distributed:
  """How this process joined a multi-process job (or that it runs alone)."""
  process_index: int
  process_count: int
  local_devices: int
  global_devices: int


def _cluster_environment() -> str | None:
  """The name of a multi-process launcher detected from the environment, or None."""
  if int(os.environ.get('SLURM_NTASKS', '1') or 1) > 1:
    return 'Slurm'
  if int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1') or 1) > 1:
    return 'Open MPI'
  hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '')
  if ',' in hosts:
    return 'Cloud TPU pod'
  return None


def _timeouts(heartbeat_timeout: int) -> dict:
  if isinstance(heartbeat_timeout, bool) or int(heartbeat_timeout) < 1:
    raise ValueError(f'the heartbeat timeout must be a positive number of seconds, got '
                     f'{heartbeat_timeout!r}')
  return {'heartbeat_timeout_seconds': int(heartbeat_timeout),
          'shutdown_timeout_seconds': SHUTDOWN_TIMEOUT_S}


def _enable_recoverability() -> None:
  """A peer's death raises in the survivors' collectives instead of aborting them from C++
  (jax_enable_recoverability), so that they can say what happened and exit cleanly."""
  jax.config.update('jax_enable_recoverability', True)


def peer_failure(error: BaseException | None) -> str | None:
  """The runtime's words when `error` (or an exception it was raised from or during) says that
  another process of the job died or cannot be reached; None for any other error. Of several
  such errors in the chain, the earliest (the root cause) is the one returned.

  Args:
    error: an exception, e.g. the one a training step or a checkpoint barrier raised.

  Returns:
    the first line of the matching message, e.g. 'UNKNOWN: Gloo all-reduce failed: ...
    Connection reset by peer', or None.
  """
  seen, found = set(), None
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    text = str(error)
    if _PEER_FAILURE.search(text):   # The earliest cause wins: it says what happened first.
      found = next((l.strip() for l in text.splitlines() if _PEER_FAILURE.search(l)),
                   text.strip())
    error = error.__cause__ or error.__context__
  return found


def peer_lost_message(error_line: str, workdir: str | None = None) -> str:
  """The one line a surviving process prints when its job lost a peer (see `peer_failure`)."""
  me = f'process {jax.process_index()} of {jax.process_count()}'
  resume = 'rerun the same command on every process'
  if workdir:
    step = workdir_lib.latest_checkpoint_step(workdir)
    resume += (f': it resumes from the last checkpoint (step {step}) in {workdir}'
               if step is not None else f' (no checkpoint in {workdir} yet: it starts afresh)')
  return (f'{me}: another process of the job died or became unreachable, so the job cannot '
          f'go on ({error_line[:200]}); stopping now. To continue, {resume}.')


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           mode: str = 'auto', cpu_devices: int = 0,
                           heartbeat_timeout: int = HEARTBEAT_TIMEOUT_S) -> Distributed:
  """Starts JAX's multi-process runtime when asked or when a cluster launched this process.

  Args:
    coordinator_address: HOST:PORT of process 0 (explicit mode: with num_processes and
      process_id).
    num_processes, process_id: this job's size and this process's index.
    mode: 'auto' initialises with explicit arguments when given, else with JAX's own
      auto-detection when the environment shows a multi-process launcher (Cloud TPU pod
      workers, Slurm with several tasks, Open MPI); 'on' always initialises (JAX detects what
      is not given); 'off' never.
    cpu_devices: > 0 splits this host's CPU into that many JAX devices (jax_num_cpu_devices);
      only possible before JAX has started its backends.
    heartbeat_timeout: seconds without a heartbeat after which a process counts as dead (and
      the survivors' collectives fail, see `peer_failure`).

  Must run before any JAX computation.
  """
  if mode not in ('auto', 'on', 'off'):
    raise ValueError(f"distributed mode must be 'auto', 'on' or 'off', got {mode!r}")
  if cpu_devices:
    try:
      jax.config.update('jax_num_cpu_devices', int(cpu_devices))
    except RuntimeError as error:
      logging.warning('--cpu_devices=%d ignored: %s', cpu_devices, error)
  explicit = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in explicit) and mode != 'off':
    if any(v is None for v in explicit):
      raise ValueError('--coordinator_address, --num_processes and --process_id go together '
                       f'(got {coordinator_address!r}, {num_processes!r}, {process_id!r})')
    _enable_recoverability()
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=int(num_processes), process_id=int(process_id),
                               **_timeouts(heartbeat_timeout))
  elif mode == 'on' or (mode == 'auto' and _cluster_environment()):
    logging.info('Joining a multi-process job (%s).', _cluster_environment() or 'auto-detected')
    _enable_recoverability()
    jax.distributed.initialize(**_timeouts(heartbeat_timeout))
  info = Distributed(process_index=jax.process_index(), process_count=jax.process_count(),
                     local_devices=jax.local_device_count(), global_devices=jax.device_count())
  if info.process_count > 1:
    logging.info('Process %d of %d: %d local devices of %d.', info.process_index,
                 info.process_count, info.local_devices, info.global_devices)
  return info
