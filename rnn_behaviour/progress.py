"""Progress a person can follow: what is running, how far, elapsed time and ETA.

Two small reporters, for the command line and for notebooks alike:

  reporter = progress.ProgressReporter(total=10_000, what='training', start=step)
  for step in range(step, 10_000):
    ...
    reporter.update(step + 1, loss=float(loss))
  reporter.close()

  stages = progress.Stages('evaluate', ['sample the network', 'fit mixtures', 'figures'])
  with stages.stage('sample the network'):
    ...

Each report is an absl INFO line (what the entry point, run under `absl.app.run`, prints), at
most every `every_s` seconds. Where absl's INFO lines are not shown -- a notebook or a script
that never calls `app.run` leaves absl at WARNING -- the same progress is drawn with tqdm: a
live bar (a widget in Colab and Jupyter when ipywidgets is installed, text otherwise). tqdm is
already installed with the package (NumPyro depends on it) and is the one progress bar most
notebooks render; CLU's `periodic_actions.ReportProgress` only logs through absl, which a
notebook does not show, and would add CLU to the dependencies.

The rate excludes the first update: in JAX the first step includes compilation, which would
otherwise drag the steps/s down and the ETA up for the whole run.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator, Sequence

from absl import logging


def format_duration(seconds: float | None) -> str:
  """'1h02m', '3m05s', '4.2s' or '?' (None, NaN or infinite)."""
  if seconds is None or seconds != seconds or seconds in (float('inf'), float('-inf')):
    return '?'
  seconds = max(0.0, float(seconds))
  if seconds < 60:
    return f'{seconds:.1f}s'
  minutes, secs = divmod(int(round(seconds)), 60)
  if minutes < 60:
    return f'{minutes}m{secs:02d}s'
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m'


def absl_info_shown() -> bool:
  """Whether absl INFO lines reach a handler (True under `absl.app.run`, False in notebooks)."""
  return logging.get_absl_logger().isEnabledFor(logging.converter.STANDARD_INFO)


def in_notebook() -> bool:
  """Whether this runs in a Jupyter/Colab kernel."""
  shell = sys.modules.get('IPython')
  ipython = getattr(shell, 'get_ipython', lambda: None)() if shell else None
  return ipython is not None and hasattr(ipython, 'kernel')


def _make_bar(total: int, what: str, initial: int, unit: str):
  """A tqdm bar whose text after the bar is ours (rate without compilation, ETA)."""
  bar_format = '{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}'
  kwargs = dict(total=total, desc=what, initial=initial, unit=unit, bar_format=bar_format,
                mininterval=0, leave=True, dynamic_ncols=True)
  if in_notebook():
    try:
      import ipywidgets  # pylint: disable=g-import-not-at-top,unused-import
      from tqdm import notebook  # pylint: disable=g-import-not-at-top
      return notebook.tqdm(**kwargs)
    except ImportError:
      kwargs['file'] = sys.stdout   # A kernel shows stdout under the cell; \r redraws in place.
  from tqdm import std  # pylint: disable=g-import-not-at-top
  return std.tqdm(**kwargs)


class ProgressReporter:
  """Reports progress of a loop of `total` units: done/total, rate, elapsed and ETA.

  `update(done)` is cheap; it reports only when `every_s` seconds have passed since the last
  report, on the first update, and on reaching `total`. The rate (units/s) is measured from the
  first update on, so that a first step that compiles is left out of it.

  Args:
    total: the number of units the loop reaches (e.g. `config.train.num_steps`).
    what: what is running, e.g. 'training'; starts every line.
    start: units done before this reporter (a resumed run's step).
    unit: name of a unit, e.g. 'step', 'chunk'.
    every_s: the least time between two reports, in seconds.
    display: 'auto' (a tqdm bar only where absl INFO is not shown), 'bar' or 'log'.
    clock: seconds, monotonic (injectable for tests).
  """

  def __init__(self, total: int, what: str, *, start: int = 0, unit: str = 'step',
               every_s: float = 5.0, display: str = 'auto',
               clock: Callable[[], float] = time.monotonic):
    if display not in ('auto', 'bar', 'log'):
      raise ValueError(f"display must be 'auto', 'bar' or 'log', got {display!r}")
    self.total, self.what, self.unit, self.every_s = int(total), what, unit, every_s
    self.start = self.done = int(start)
    self._clock = clock
    self._t0 = clock()
    self._first: tuple[float, int] | None = None    # (time, done) at the first update.
    self._last_report: float | None = None
    self.lines: list[str] = []                       # Every line reported, for callers/tests.
    self._closed = False
    use_bar = display == 'bar' or (display == 'auto' and not absl_info_shown())
    self._bar = _make_bar(self.total, what, self.start, unit) if use_bar else None

  @property
  def elapsed(self) -> float:
    return self._clock() - self._t0

  def rate(self) -> float | None:
    """Units per second since the first update (compilation excluded); None before a second."""
    if self._first is None or self.done <= self._first[1]:
      return None
    return (self.done - self._first[1]) / max(self._clock() - self._first[0], 1e-9)

  def eta(self) -> float | None:
    """Seconds left at the current rate; None before a rate is known."""
    rate = self.rate()
    return None if not rate else (self.total - self.done) / rate

  def summary(self, **extra) -> str:
    """'<what>: 120/1000 steps (12%), 18.3 steps/s, elapsed 1m05s, ETA 48.1s[, k v ...]'."""
    rate = self.rate()
    percent = 100.0 * self.done / max(self.total, 1)
    parts = [f'{self.what}: {self.done}/{self.total} {self.unit}s ({percent:.0f}%)',
             f'{rate:.3g} {self.unit}s/s' if rate else f'first {self.unit} (compiling)',
             f'elapsed {format_duration(self.elapsed)}', f'ETA {format_duration(self.eta())}']
    parts += [f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in extra.items()]
    return ', '.join(parts)

  def update(self, done: int, **extra) -> str | None:
    """Records that `done` units are complete; returns the line if it reported one."""
    now = self._clock()
    self.done = int(done)
    first = self._first is None
    if first:
      self._first = (now, self.done)
    due = (first or self.done >= self.total
           or self._last_report is None or now - self._last_report >= self.every_s)
    if not due:
      return None
    self._last_report = now
    line = self.summary(**extra)
    self._emit(line)
    return line

  def close(self) -> str:
    """Reports the final line (total time and mean rate) and closes the bar."""
    rate = self.rate()
    tail = (f'in {format_duration(self.elapsed)}'
            + (f' ({rate:.3g} {self.unit}s/s after the first)' if rate else ''))
    line = f'{self.what}: {self.done}/{self.total} {self.unit}s {tail}'
    self._emit(line, tail)
    self._closed = True
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    return line

  def __enter__(self) -> ProgressReporter:
    return self

  def __exit__(self, *exc) -> None:
    if not self._closed:
      self.close()

  def _emit(self, line: str, postfix: str | None = None) -> None:
    self.lines.append(line)
    logging.info('%s', line)
    if self._bar is not None:
      self._bar.set_postfix_str(postfix or line.split(', ', 1)[-1], refresh=False)
      self._bar.update(self.done - self._bar.n)   # Redraws.


def say(line: str) -> None:
  """One progress line: logged by absl, and printed where absl INFO lines are not shown."""
  logging.info('%s', line)
  if not absl_info_shown():
    print(line, file=sys.stdout if in_notebook() else sys.stderr, flush=True)


class Stages:
  """Announces the stages of a job: '[2/5] evaluate: fit mixtures ...', then their time.

  Args:
    what: the job, e.g. 'evaluate'.
    names: the stages in their order, so that each line says how far the job is.
  """

  def __init__(self, what: str, names: Sequence[str], clock: Callable[[], float] = time.monotonic):
    self.what, self.names, self._clock = what, list(names), clock
    self._t0 = clock()
    self.lines: list[str] = []

  def _say(self, line: str) -> None:
    self.lines.append(line)
    say(line)

  @contextlib.contextmanager
  def stage(self, name: str) -> Iterator[str]:
    """Context for one stage; yields its prefix ('[k/N] what: name') for nested reporters."""
    if name not in self.names:
      raise ValueError(f'unknown stage {name!r}; stages are {self.names}')
    prefix = f'[{self.names.index(name) + 1}/{len(self.names)}] {self.what}: {name}'
    self._say(f'{prefix} ...')
    start = self._clock()
    yield prefix
    self._say(f'{prefix} done in {format_duration(self._clock() - start)} '
              f'(elapsed {format_duration(self._clock() - self._t0)})')
