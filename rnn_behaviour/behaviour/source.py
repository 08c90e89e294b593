"""Which behavioural model generates the surrogate responses of a run (config.behaviour)."""

from __future__ import annotations

import os

from rnn_behaviour.behaviour import parametric
from rnn_behaviour.behaviour import responses

SOURCES = ('parametric', 'bns')


def response_model_from_config(config, workdir: str | None = None) -> responses.ResponseModel:
  """The surrogate-data generator config.behaviour names.

  'parametric': the parametric swap model of the config. 'bns': the posterior predictive of a
  fitted BNS model, read from config.behaviour.fit, or from `<workdir>/behaviour` if that is
  empty (the `all` mode fits it there first).
  """
  source = config.behaviour.source
  if source == 'parametric':
    return parametric.from_config(config.behaviour)
  if source == 'bns':
    from rnn_behaviour.behaviour import surrogate  # Imported lazily: it pulls in NumPyro fits.
    fit_dir = config.behaviour.fit or (os.path.join(workdir, 'behaviour') if workdir else '')
    if not fit_dir or not os.path.isdir(fit_dir):
      raise FileNotFoundError(
          f'config.behaviour.fit: no behavioural fit at {fit_dir!r}; run --mode=fit_behaviour '
          'first or point config.behaviour.fit at its <workdir>/behaviour folder')
    return surrogate.load_response_model(fit_dir, config.task.num_items)
  raise ValueError(f'config.behaviour.source must be one of {SOURCES}, got {source!r}')
