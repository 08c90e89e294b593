"""Trains every objective with the same budget, seeds and target behaviour, and judges them.

  python experiments/compare_objectives.py --workdir=DIR [--config=experiments/configs/compare_cpu.py]

Each objective's seeds train as one seed ensemble in DIR/<objective>/ (one vmapped step for all
seeds), whose members are then evaluated as DIR/<objective>/seed_<s>/;
`--config.ensembles=False` trains one run per seed instead, as before (same numbers up to float
rounding). The CPU-sized default took about an hour on 2 cores one run at a time;
experiments/benchmark_comparison.py times both ways. `--config=experiments/configs/
compare_paper.py` runs the paper-sized variant on an accelerator. Interrupted comparisons resume,
and finished runs are read back. See `rnn_behaviour/comparison.py` for what is written into DIR.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rnn_behaviour import comparison  # pylint: disable=g-import-not-at-top,wrong-import-position
from rnn_behaviour import logs  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Folder for all runs and the comparison.')
config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                           'compare_cpu.py'), 'Comparison config.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  logs.quiet_libraries()
  comparison.compare(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
