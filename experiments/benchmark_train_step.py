"""Times the training step after compilation; prints one JSON object per line.

  python experiments/benchmark_train_step.py [--repeats=3] [--only=paper:8x128,default]

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

CASES = ('paper:8x128', 'paper:32x64', 'paper:32x512', 'default')


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
  import jax  # pylint: disable=g-import-not-at-top
  from rnn_behaviour import objectives, rnn, train  # pylint: disable=g-import-not-at-top
  from rnn_behaviour.behaviour import source  # pylint: disable=g-import-not-at-top
  from rnn_behaviour.configs import default, paper  # pylint: disable=g-import-not-at-top

  name, _, size = case.partition(':')
  config = {'paper': paper, 'default': default}[name].get_config()
  if size:
    displays, samples = (int(v) for v in size.split('x'))
    config.train.displays_per_batch = displays
    config.train.samples_per_display = samples
    if config.train.displays_per_chunk:
      config.train.displays_per_chunk = chunk_for(displays, samples)
  _apply_overrides(config, overrides)
  network = rnn.make_network(config)
  tx = train.make_optimizer(config.train)
  loss_fn = objectives.make_loss_fn(config, network)
  state = train.create_train_state(config, network, tx, jax.random.key(0))
  behaviour_model = source.training_model_from_config(config)
  sample_batch = jax.jit(lambda k: objectives.sample_batch(k, config, behaviour_model))
  step = jax.jit(train.make_train_step(loss_fn, tx, train._num_chunks(config.train)),  # pylint: disable=protected-access
                 donate_argnums=(0,))
  batch = sample_batch(jax.random.key(1))
  start = time.perf_counter()
  state, metrics = step(state, batch, jax.random.key(2))
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for i in range(repeats):
    batch = jax.block_until_ready(sample_batch(jax.random.key(10 + i)))
    start = time.perf_counter()
    state, metrics = step(state, batch, jax.random.key(20 + i))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  seconds = min(times)
  d, s = config.train.displays_per_batch, config.train.samples_per_display
  return {'config': name, 'displays': d, 'samples_per_display': s,
          'seconds_per_step': round(seconds, 4),
          'samples_per_s': round(d * s / seconds, 1),
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
