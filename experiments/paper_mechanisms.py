"""The paper's mechanism experiment: its curricula trained, analysed with its protocol.

  python experiments/paper_mechanisms.py --workdir=DIR [--config=...paper_mechanisms_cpu.py]
      [--chains=probe,index] [--noise_sweep] [--train_only]

Writes DIR/paper_mechanisms.csv / .md, DIR/paper_alignment.png, DIR/paper_precue_vs_distance.png
and, with --noise_sweep, DIR/noise_sweep.*; see `rnn_behaviour/paper_experiment.py`. Every chain
is a folder of resumable stage workdirs; finished stages and analyses are not redone, so
chains can be trained by separate processes (--chains=probe / --chains=index --train_only) and
the tables written by a last call without --train_only.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rnn_behaviour import logs  # pylint: disable=g-import-not-at-top,wrong-import-position
from rnn_behaviour import paper_experiment  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Folder of the experiment.')
flags.DEFINE_list('chains', None, 'Chains to train and analyse (default: all).')
flags.DEFINE_bool('noise_sweep', False, 'Also the smooth-swap chain at other noise levels.')
flags.DEFINE_bool('train_only', False, 'Train, do not analyse or tabulate.')
config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                           'paper_mechanisms_cpu.py'), 'Experiment config.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  logs.quiet_libraries()
  paper_experiment.run(FLAGS.config, FLAGS.workdir, chains=FLAGS.chains,
                       noise_sweep=FLAGS.noise_sweep, train_only=FLAGS.train_only)


if __name__ == '__main__':
  app.run(main)
