"""Progress and warning lines for the behavioural fits, visible from a shell and a notebook.

Under `app.run` absl prints INFO lines; called from a notebook or a plain script, absl's
verbosity is WARNING and INFO lines would vanish. `info` therefore also prints to stderr when
absl would drop the line, so a long fit shows where it is either way. Warnings go through
`logging.warning`, which absl always shows.
"""

from __future__ import annotations

import sys
import time

from absl import logging


def _absl_shows_info() -> bool:
  return logging.get_verbosity() >= logging.INFO


def info(message: str) -> None:
  """One progress line: absl INFO, echoed to stderr where absl would not show it."""
  logging.info(message)
  if not _absl_shows_info():
    print(message, file=sys.stderr, flush=True)


def warning(message: str) -> None:
  logging.warning(message)


class Throttle:
  """Calls `info` at most once every `interval` seconds (plus forced lines).

  Usage: `tick = Throttle(5.0); tick('cv: fold 2/5, step 300/1500')` inside a loop.
  """

  def __init__(self, interval: float = 5.0, clock=time.monotonic):
    self.interval = float(interval)
    self._clock = clock
    self._last = -float('inf')

  def __call__(self, message: str, force: bool = False) -> bool:
    """Logs `message` if forced or `interval` s have passed since the last line; True if so."""
    now = self._clock()
    if force or now - self._last >= self.interval:
      self._last = now
      info(message)
      return True
    return False
