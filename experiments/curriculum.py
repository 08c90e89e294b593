"""Trains a curriculum: stages in order, each started from an earlier stage's final parameters.

  python experiments/curriculum.py --config=experiments/configs/curriculum_probe.py --workdir=DIR
  python experiments/curriculum.py --config=experiments/configs/curriculum_index.py:paper ...

Each stage is its own resumable workdir DIR/<stage>; finished stages are not rerun. See
`rnn_behaviour/curriculum.py`.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rnn_behaviour import curriculum  # pylint: disable=g-import-not-at-top,wrong-import-position
from rnn_behaviour import logs  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Folder holding one workdir per stage.')
config_flags.DEFINE_config_file('config', None, 'Curriculum config.')
flags.mark_flags_as_required(['workdir', 'config'])


def main(argv):
  del argv
  logs.quiet_libraries()
  try:
    curriculum.run(FLAGS.config, FLAGS.workdir)
  except curriculum.StageNotLearned as stop:
    # Not a bug: the chain stopped where a stage did not learn; say so in one line.
    print(f'curriculum stopped: {stop}', file=sys.stderr)
    sys.exit(3)


if __name__ == '__main__':
  app.run(main)
