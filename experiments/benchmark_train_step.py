"""Times the training step after compilation; prints one JSON object per line.

  python experiments/benchmark_train_step.py [--repeats=3] [--only=paper:8x128,default,default@3/2]

A case is `config[:KxS][@E][/D[xM]]`: K displays x S samples a step, E seed-ensemble members,
on D devices (config.parallel.num_devices) of which M shard the member axis
(config.parallel.member_shards). On a CPU the case's process splits the host into D devices
(jax_num_cpu_devices), so `default/1` and `default/2` compare one and two host devices.

Each case runs in its own subprocess so that `peak_mem_mib` (the process's peak resident set
size, on CPU; the allocator's peak on GPU/TPU) belongs to that case alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer('repeats', 3, 'Timed steps per case (after one compile-and-run step).')
flags.DEFINE_string('only', '', 'Comma-separated cases, e.g. paper:32x512,default.')
flags.DEFINE_string('case', '', 'Internal: run one case in this process.')
flags.DEFINE_string('overrides', '', 'Extra config overrides, e.g. train.displays_per_chunk=4.')

CASES = ('paper:8x128', 'paper:32x64', 'paper:32x512', 'default', 'default/2', 'default@3',
         'default@3/3x3')


def chunk_for(displays: int, samples: int, target: int = 512) -> int:
  """Displays per gradient chunk: about `target` samples a chunk, measured fastest on a 2-core
  CPU, but at least 2 displays (a one-display chunk ran 3.5x slower: XLA's CPU loops
  parallelise over the leading axis)."""
  chunk = min(displays, max(2, target // samples))
  while displays % chunk:
    chunk -= 1
  return chunk


def _apply_overrides(config, overrides: str):
  for item in filter(None, overrides.split(',')):
    field, value = item.split('=')
    section, name = field.split('.')
    old = config[section][name]
    config[section][name] = type(old)(value) if not isinstance(old, bool) else value == 'True'


def _peak_mem_mib() -> float:
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use'] / 2**20
  import resource  # pylint: disable=g-import-not-at-top
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, repeats: int, overrides: str) -> dict:
  """Times one case, `config[:KxS][@E]`: a config, displays x samples, and E ensemble members.

  Uses the same seam as training (`train.build`, `train.train_step_fn`): the timed step samples
  its batch and updates every member, as the training loop does.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from rnn_behaviour import train  # pylint: disable=g-import-not-at-top
  from rnn_behaviour.configs import default, paper  # pylint: disable=g-import-not-at-top

  case, _, devices = case.partition('/')
  case, _, members = case.partition('@')
  name, _, size = case.partition(':')
  num_devices, _, member_shards = devices.partition('x')
  if num_devices:  # Splits the host CPU (only the CPU backend reads it).
    jax.config.update('jax_num_cpu_devices', int(num_devices))
  config = {'paper': paper, 'default': default}[name].get_config()
  config.train.ensemble_size = int(members or 1)
  config.parallel.num_devices = int(num_devices or 1)
  config.parallel.member_shards = int(member_shards or 1)
  if size:
    displays, samples = (int(v) for v in size.split('x'))
    config.train.displays_per_batch = displays
    config.train.samples_per_display = samples
    if config.train.displays_per_chunk:
      config.train.displays_per_chunk = chunk_for(displays, samples)
  _apply_overrides(config, overrides)
  built = train.build(config, mesh=train.run_mesh(config))
  seeds = train.member_seeds(config)
  state = train.init_states(built, seeds)
  step = train.train_step_fn(built, seeds)
  start = time.perf_counter()
  state, metrics, _ = step(state)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    state, metrics, _ = step(state)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  seconds = min(times)
  d, s = config.train.displays_per_batch, config.train.samples_per_display
  return {'config': name, 'displays': d, 'samples_per_display': s, 'members': len(seeds),
          'devices': config.parallel.num_devices,
          'member_shards': config.parallel.member_shards,
          'seconds_per_step': round(seconds, 4),
          'samples_per_s': round(len(seeds) * d * s / seconds, 1),
          'peak_mem_mib': round(_peak_mem_mib(), 1),
          'device': str(jax.devices()[0].device_kind),
          'cell': config.model.cell, 'num_units': config.model.num_units,
          'displays_per_chunk': config.train.displays_per_chunk, 'remat': config.train.remat,
          'compile_and_first_step_s': round(compile_s, 2), 'overrides': overrides}


def main(argv):
  del argv
  if FLAGS.case:
    print(json.dumps(run_case(FLAGS.case, FLAGS.repeats, FLAGS.overrides)), flush=True)
    return
  cases = FLAGS.only.split(',') if FLAGS.only else CASES
  for case in cases:
    result = subprocess.run(
        [sys.executable, __file__, f'--case={case}', f'--repeats={FLAGS.repeats}',
         f'--overrides={FLAGS.overrides}'], capture_output=True, text=True, check=False)
    lines = [l for l in result.stdout.splitlines() if l.startswith('{')]
    if result.returncode or not lines:
      print(json.dumps({'config': case, 'error': result.stderr.strip().splitlines()[-1:]}))
    else:
      print(lines[-1], flush=True)


if __name__ == '__main__':
  app.run(main)
