"""Progress logging for the entry points: Orbax's per-save INFO chatter (and its warning that a
run being read is opened read-only) filtered out."""

from absl import logging


class _QuietLibraries(logging.logging.Filter):
  """Drops INFO records that Orbax emits on every checkpoint save."""

  def filter(self, record):
    if '/orbax/' not in record.pathname:
      return True
    # Reading a finished run's checkpoints opens them read-only on purpose (nothing is created);
    # Orbax warns about that every time.
    if 'is read only' in record.getMessage():
      return False
    # Python's level numbers: absl.logging.WARNING is absl's own verbosity (-1).
    return record.levelno >= logging.logging.WARNING


def quiet_libraries() -> None:
  """Installs the filter on absl's logger (its handler's emit() bypasses handler filters)."""
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _QuietLibraries) for f in logger.filters):
    logger.addFilter(_QuietLibraries())
