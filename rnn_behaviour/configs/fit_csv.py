"""Fit the behavioural models to a lab's trial CSV: `--mode=fit_behaviour`.

  python -m rnn_behaviour.main --mode=fit_behaviour --workdir=/tmp/mylab \
      --config=rnn_behaviour/configs/fit_csv.py --config.data.path=trials.csv \
      [--config.data.angle_unit=degrees] [--config.data.subjects=s01,s02] [--config.data.set_sizes=2,4]

CSV format (see rnn_behaviour/behaviour/data.py): one row a trial; columns set_size, cued
(1-based j of cue_j/report_j), response, cue_1..cue_N, report_1..report_N (empty past the
trial's set size), optional subject and condition. Radians in [-pi, pi) or [0, 2pi) unless
angle_unit='degrees' (a file declared in degrees whose angles all lie within +-2 pi is refused:
it holds radians). Commas separate fields, or tabs or semicolons when the header has no comma.
Fits are per subject x set size x condition; a rerun after a kill reuses every finished stage.
"""

from rnn_behaviour.configs import fit_bays2009


def get_config():
  config = fit_bays2009.get_config()
  config.data = fit_bays2009.data_block(path='', fmt='csv')
  return config
