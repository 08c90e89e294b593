"""From a lab's trial file to one shareable page: `--mode=report` (configs/report.py).

Not to be confused with `rnn_behaviour.analysis.report` (the design-grid analyses of one
recorded network). This package runs the whole loop through the library's own seams and puts
the results on one page:

  stages.py   the loop: split the trials, fit, train, evaluate, judge on held-out trials,
              analyse; each stage resumable and skipped when finished, with progress and an ETA
  judge.py    the networks, the baseline and the BNS judged on the held-out real trials, and
              the plain-language conclusions
  figures.py  the report's own figures (spread over ensemble members)
  page.py     `DIR/report/index.html` (self-contained: figures inlined) and its CSV tables
"""

import time

from absl import logging

from rnn_behaviour import progress
from rnn_behaviour.lab_report import page
from rnn_behaviour.lab_report import stage_plan
from rnn_behaviour.lab_report import stages as stages_lib


def run(config, workdir: str) -> str:
  """The whole loop, then the page; returns the path of DIR/report/index.html."""
  stages_lib.validate(config)
  started = time.time()
  stages = stages_lib.plan(config, workdir)
  timings = stage_plan.Plan(workdir, stages).run()
  progress.say('report: writing the page')
  t0 = time.time()
  path = page.write_report(config, workdir, timings, started)
  logging.info('report: page written in %.1f s', time.time() - t0)
  progress.say(f'report: {path} (open it in a browser; it needs no network)')
  return path
