"""Command-line entry point.

  python -m rnn_behaviour.main --config=rnn_behaviour/configs/default.py --workdir=DIR \
      [--config.train.num_steps=100 ...] [--mode=train|evaluate|all|fit_behaviour|analyse]

The logic lives in the library; this file only parses flags and dispatches.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rnn_behaviour import logs
from rnn_behaviour import modes

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, evaluations, plots.')
flags.DEFINE_enum('mode', 'all', modes.MODES, 'What to run.')
flags.DEFINE_bool('restart', False, 'Start the workdir afresh; its old outputs move to '
                  'superseded/<time>/.')
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  logs.quiet_libraries()
  logging.info('JAX devices: %s', jax.devices())
  modes.run(FLAGS.config, FLAGS.workdir, FLAGS.mode, restart=FLAGS.restart)


if __name__ == '__main__':
  app.run(main)
