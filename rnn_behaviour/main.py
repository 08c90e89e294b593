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

from rnn_behaviour import config_validation
from rnn_behaviour import evaluate
from rnn_behaviour import train

MODES = ('train', 'evaluate', 'all', 'fit_behaviour', 'analyse')

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, evaluations, plots.')
flags.DEFINE_enum('mode', 'all', MODES, 'What to run.')
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir: str, mode: str) -> None:
  """Runs a mode on a workdir; `all` fits behaviour first when the config trains on a fit."""
  if mode == 'fit_behaviour' or (mode == 'all' and config.behaviour.source == 'bns'
                                 and not config.behaviour.fit):
    from rnn_behaviour.behaviour import pipeline  # pylint: disable=g-import-not-at-top
    pipeline.fit_behaviour(config, workdir)
    if mode == 'fit_behaviour':
      return
  if mode == 'analyse':
    from rnn_behaviour.analysis import run_analysis  # pylint: disable=g-import-not-at-top
    run_analysis.analyse(config, workdir)
    return
  config_validation.validate(config)
  if mode in ('train', 'all'):
    train.train(config, workdir)
  if mode in ('evaluate', 'all'):
    evaluate.evaluate(config, workdir)


class _QuietLibraries(logging.logging.Filter):
  """Keeps Orbax's per-save INFO chatter out of the run's progress log."""

  def filter(self, record):
    return record.levelno >= logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  logging.get_absl_handler().python_handler.addFilter(_QuietLibraries())
  logging.info('JAX devices: %s', jax.devices())
  run(FLAGS.config, FLAGS.workdir, FLAGS.mode)


if __name__ == '__main__':
  app.run(main)
