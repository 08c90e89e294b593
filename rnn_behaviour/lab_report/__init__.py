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

from rnn_behaviour.lab_report.stages import run  # noqa: F401
