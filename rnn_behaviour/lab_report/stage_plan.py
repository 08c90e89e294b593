"""A plan of stages: each run in order unless its outputs are current, with the elapsed time
and an ETA throughout, and each stage's wall time appended to the workdir's timings file."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

from etils import epath

from rnn_behaviour import files
from rnn_behaviour import progress

TIMINGS_FILE = 'report_timings.jsonl'


@dataclasses.dataclass
class Stage:
  """One step of the loop: `work()` runs it, `done()` says whether its outputs are current,
  `estimate` its a-priori seconds (for the ETA)."""
  name: str
  work: Callable[[], None]
  done: Callable[[], bool]
  estimate: float


class Plan:
  """Runs stages in order, skipping finished ones, with elapsed time and an ETA throughout.

  The ETA is the a-priori estimate of the stages left, scaled by the ratio of the measured to
  the estimated time of the stages run so far, both plus PRIOR_SECONDS (so a loaded machine's
  slowness carries over, and a few quick stages do not).
  """

  def __init__(self, workdir: str, stages: list[Stage], clock=time.monotonic,
               timings_file: str = TIMINGS_FILE):
    self.workdir, self.stages, self._clock = workdir, stages, clock
    self.timings_file = timings_file
    self.timings: dict[str, dict] = {}

  PRIOR_SECONDS = 60.0   # How much of the a-priori estimates' word the first stages outweigh.

  def _eta(self, index: int, measured: float, estimated: float) -> float:
    # A short first stage alone would set the scale: the prior damps it.
    scale = (measured + self.PRIOR_SECONDS) / (estimated + self.PRIOR_SECONDS)
    return scale * sum(s.estimate for s in self.stages[index:])

  def run(self) -> dict:
    """Runs the plan; returns {stage: {'seconds', 'skipped'}} (skipped stages keep the wall
    time of the run that did them, from DIR/report_timings.jsonl)."""
    previous = {r['stage']: r for r in files.read_jsonl(
        os.fspath(epath.Path(self.workdir) / self.timings_file)) if not r.get('skipped')}
    start = self._clock()
    measured = estimated = 0.0
    n = len(self.stages)
    for i, stage in enumerate(self.stages):
      prefix = f'report [{i + 1}/{n}] {stage.name}'
      if stage.done():
        progress.say(f'{prefix}: finished earlier, skipped')
        self.timings[stage.name] = dict(seconds=previous.get(stage.name, {}).get('seconds'),
                                        skipped=True)
        continue
      eta = self._eta(i, measured, estimated)
      progress.say(f'{prefix} ... (elapsed {progress.format_duration(self._clock() - start)}, '
                   f'ETA {progress.format_duration(eta)} for this and the rest)')
      t0 = self._clock()
      stage.work()
      seconds = self._clock() - t0
      measured += seconds
      estimated += stage.estimate
      self.timings[stage.name] = dict(seconds=seconds, skipped=False)
      files.append_jsonl(os.fspath(epath.Path(self.workdir) / self.timings_file),
                         dict(stage=stage.name, seconds=seconds, estimate=stage.estimate,
                              finished=time.time()))
      progress.say(f'{prefix} done in {progress.format_duration(seconds)} (elapsed '
                   f'{progress.format_duration(self._clock() - start)}, ETA '
                   f'{progress.format_duration(self._eta(i + 1, measured, estimated))})')
    return self.timings
