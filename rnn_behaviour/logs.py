"""Progress logging for the entry points: Orbax's per-save INFO chatter filtered out."""

from absl import logging


class _QuietLibraries(logging.logging.Filter):
  """Drops INFO records that Orbax emits on every checkpoint save."""

  def filter(self, record):
    # Python's level numbers: absl.logging.WARNING is absl's own verbosity (-1).
    return record.levelno >= logging.logging.WARNING or '/orbax/' not in record.pathname


def quiet_libraries() -> None:
  """Installs the filter on absl's logger (its handler's emit() bypasses handler filters)."""
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _QuietLibraries) for f in logger.filters):
    logger.addFilter(_QuietLibraries())
