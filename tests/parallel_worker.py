"""Trains the tiny config (rnn_behaviour/configs/tiny.py) on given device layouts and prints
what tests/test_parallel.py compares (one JSON line). Runs in its own process: the CPU device
count is fixed at start-up, and `config.parallel.num_devices` picks the first N of them, so one
process of 8 devices can train on 1, 2 and 8.

  python tests/parallel_worker.py --workdir=DIR --cpu_devices=8 \
      --runs='[["one", {"parallel.num_devices": 1}], ["two", {"parallel.num_devices": 2}]]' \
      [--coordinator_address=localhost:PORT --num_processes=2 --process_id=I]

Each run trains in DIR/<name>; runs with the same name continue one workdir (a resume).
"""

import json
import os

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Folder of the runs.')
flags.DEFINE_integer('cpu_devices', 1, 'CPU devices of this process.')
flags.DEFINE_string('runs', '[]', 'JSON list of [name, {dotted config override: value}].')
flags.DEFINE_string('coordinator_address', None, 'Multi-process: HOST:PORT of process 0.')
flags.DEFINE_integer('num_processes', None, 'Multi-process: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-process: this process.')


def main(argv):
  del argv
  from rnn_behaviour import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id, cpu_devices=FLAGS.cpu_devices)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rnn_behaviour import checkpoints  # pylint: disable=g-import-not-at-top
  from rnn_behaviour import train  # pylint: disable=g-import-not-at-top
  from rnn_behaviour import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from rnn_behaviour.configs import tiny  # pylint: disable=g-import-not-at-top

  results = {}
  for name, layout in json.loads(FLAGS.runs):
    config = tiny.get_config()
    config.train.num_steps = 3
    for field, value in layout.items():
      section, key = field.split('.')
      config[section][key] = value
    workdir = os.path.join(FLAGS.workdir, name)
    resumed = None
    if workdir_lib.has_checkpoint(workdir):
      resumed = checkpoints.latest_step(workdir)
    state = train.train(config, workdir)
    mesh = train.run_mesh(config)
    params = train.to_host(state.params)
    results[name] = {
        'metrics': train.read_metrics(workdir) if jax.process_index() == 0 else [],
        'param_norm': float(np.sqrt(sum(np.sum(np.square(p))
                                        for p in jax.tree_util.tree_leaves(params)))),
        'mesh': None if mesh is None else dict(mesh.shape),
        'devices': jax.device_count(), 'processes': jax.process_count(),
        'resumed_from': resumed,
    }
  if jax.process_index() == 0:
    print(json.dumps(results), flush=True)
  parallel.leave_distributed()        # As rnn_behaviour/main.py ends a multi-process job.


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
