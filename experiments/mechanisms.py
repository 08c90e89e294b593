"""Runs the mechanism analyses over the networks an objectives comparison trained.

  python experiments/mechanisms.py --workdir=DIR

DIR is the workdir of `experiments/compare_objectives.py`. Writes each run's
`<run>/analysis/` and, into DIR, `mechanisms.csv` (objective, seed, alignment_sigmoid_mse,
alignment_flat_mse, swap_auc_precue, swap_auc_postcue) and `mechanisms.md`.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rnn_behaviour.analysis import run_analysis  # pylint: disable=g-import-not-at-top,wrong-import-position
from rnn_behaviour import logs  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Workdir of an objectives comparison.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  logs.quiet_libraries()
  rows = run_analysis.analyse_comparison(FLAGS.workdir)
  logging.info('Analysed %d networks; table in %s', len(rows),
               os.path.join(FLAGS.workdir, 'mechanisms.md'))


if __name__ == '__main__':
  app.run(main)
