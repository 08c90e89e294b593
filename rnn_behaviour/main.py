"""Command-line entry point.

  python -m rnn_behaviour.main --config=rnn_behaviour/configs/default.py --workdir=DIR \
      [--config.train.num_steps=100 ...] [--mode=train|evaluate|all|fit_behaviour|analyse]
      [--coordinator_address=HOST:PORT --num_processes=N --process_id=I] [--cpu_devices=D]

The logic lives in the library; this file only parses flags and dispatches.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rnn_behaviour import logs
from rnn_behaviour import modes
from rnn_behaviour import parallel

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, evaluations, plots.')
flags.DEFINE_enum('mode', 'all', modes.MODES, 'What to run.')
flags.DEFINE_bool('restart', False, 'Start the workdir afresh; its old outputs move to '
                  'superseded/<time>/.')
flags.DEFINE_string('coordinator_address', None, 'Many hosts: HOST:PORT of process 0 (with '
                    '--num_processes and --process_id); not needed on Cloud TPU pods or Slurm.')
flags.DEFINE_integer('num_processes', None, 'Many hosts: the number of processes of the job.')
flags.DEFINE_integer('process_id', None, 'Many hosts: this process\'s index, 0 .. N-1.')
flags.DEFINE_enum('distributed', 'auto', ('auto', 'on', 'off'),
                  'auto: join a multi-process job when the flags above are given or a TPU pod '
                  '/ Slurm / Open MPI launcher started this process; on: always (JAX detects '
                  'the cluster); off: never.')
flags.DEFINE_integer('cpu_devices', None, 'Split the host CPU into this many JAX devices '
                     '(default: config.parallel.cpu_devices).')
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  logs.quiet_libraries()
  cpu_devices = FLAGS.cpu_devices
  if cpu_devices is None:
    cpu_devices = FLAGS.config.get('parallel', {}).get('cpu_devices', 0)
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id, mode=FLAGS.distributed,
                                  cpu_devices=cpu_devices)
  logging.info('JAX devices: %s', jax.devices())
  modes.run(FLAGS.config, FLAGS.workdir, FLAGS.mode, restart=FLAGS.restart)


if __name__ == '__main__':
  app.run(main)
