"""What a behaviour fit is asked: the checks of a config's `data` and `fit` blocks, the
defaults of fields added since, and the cache keys of the outputs.

Every cached result is keyed on a SHA-256 of what it depends on: the data file's bytes, the
resolved `data` block (absolute path, parsed selections) and the `fit` block (the main BNS fit
only on the fields that change it: `input_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import os

from etils import epath
import numpy as np

from rnn_behaviour import errors
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.behaviour import bns as bns_lib
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import mixture

# Defaults of the robustness fields, for configs written before they existed.
FIT_DEFAULTS = dict(min_cell_trials=30, svi_max_restarts=2, svi_restart_lr_factor=0.3,
                    progress_seconds=5.0, ppc_draws=200, plots=True)
# Fields of config.fit that do not change the main BNS fit (only mixtures, CV or reporting).
_NOT_BNS_FIELDS = ('mixture_models', 'cv_folds', 'cv_svi_steps', 'compare_dimensions',
                   'compare_emissions', 'min_cell_trials', 'progress_seconds', 'ppc_draws',
                   'plots')
# A bad value of the data or fit block: a ValueError and a UserError (errors.py).
ConfigError = errors.ConfigError


def _check(value, allowed, name):
  """Raises ConfigError unless `value` is one of `allowed`."""
  if value not in allowed:
    raise ConfigError(f'{name} must be ' + ' or '.join(repr(a) for a in allowed)
                      + f', got {value!r}')


def fit_value(fc, name):
  """config.fit.<name>, or its default for configs written before the field existed."""
  return fc.get(name, FIT_DEFAULTS[name])


def validate_config(config) -> None:
  """Raises ValueError naming the first bad field of the `data` and `fit` blocks."""
  for block in ('data', 'fit'):
    if block not in config:
      raise ConfigError(f'config.{block} is missing (use configs/fit_bays2009.py or fit_csv.py)')
  d, f = config.data, config.fit
  _check(d.format, ('bays2009', 'csv'), 'config.data.format')
  _check(d.angle_unit, data_lib.ANGLE_UNITS, 'config.data.angle_unit')
  for name in data_lib.SELECTION_FIELDS:
    data_lib.parse_selection(d.get(name), name)        # Raises naming config.data.<name>.
  _check(f.inference, bns_lib.INFERENCES, 'config.fit.inference')
  _check(f.bns_dimension, bns_lib.DIMENSIONS, 'config.fit.bns_dimension')
  _check(f.emission, bns_lib.EMISSIONS, 'config.fit.emission')
  _check(f.guide, ('mvn', 'normal'), 'config.fit.guide')
  for m in f.mixture_models:
    _check(m, mixture.MODELS, 'config.fit.mixture_models[...]')
  for m in f.compare_dimensions:
    _check(m, bns_lib.DIMENSIONS, 'config.fit.compare_dimensions[...]')
  for m in f.compare_emissions:
    _check(m, bns_lib.EMISSIONS, 'config.fit.compare_emissions[...]')
  if f.cv_folds == 1 or f.cv_folds < 0:
    raise ConfigError(f'config.fit.cv_folds must be 0 (no comparison) or >= 2, got {f.cv_folds}')
  for name in ('svi_steps', 'num_posterior_samples', 'num_fourier'):
    if f[name] < (0 if name == 'num_fourier' else 1):
      raise ConfigError(f'config.fit.{name} must be positive, got {f[name]}')
  positive = lambda v: isinstance(v, (int, float)) and np.isfinite(v) and v > 0
  if not positive(f.svi_learning_rate):
    raise ConfigError('config.fit.svi_learning_rate must be a finite number > 0 (0 would return '
                      f'the prior as the fit), got {f.svi_learning_rate!r}')
  if f.get('cv_svi_steps', 0) < 0:
    raise ConfigError(f'config.fit.cv_svi_steps must be >= 0 (0: svi_steps), got '
                      f'{f.cv_svi_steps}')
  if f.inference == 'nuts' and f.nuts_warmup < 1:
    raise ConfigError(f'config.fit.nuts_warmup must be >= 1 for NUTS, got {f.nuts_warmup}')
  if fit_value(f, 'min_cell_trials') < 1:
    raise ConfigError('config.fit.min_cell_trials must be >= 1, got '
                      f'{fit_value(f, "min_cell_trials")}')
  if fit_value(f, 'svi_max_restarts') < 0:
    raise ConfigError('config.fit.svi_max_restarts must be >= 0, got '
                      f'{fit_value(f, "svi_max_restarts")}')
  if not 0 < fit_value(f, 'svi_restart_lr_factor') < 1:
    raise ConfigError('config.fit.svi_restart_lr_factor must be in (0, 1), got '
                      f'{fit_value(f, "svi_restart_lr_factor")}')
  if fit_value(f, 'progress_seconds') < 0:
    raise ConfigError('config.fit.progress_seconds must be >= 0, got '
                      f'{fit_value(f, "progress_seconds")}')
  if fit_value(f, 'ppc_draws') < 1:
    raise ConfigError(f'config.fit.ppc_draws must be >= 1, got {fit_value(f, "ppc_draws")}')


def check_data_for_fit(table: data_lib.TrialTable, fit_config) -> None:
  """Raises ValueError naming the config field the loaded data cannot satisfy."""
  folds = int(fit_config.cv_folds)
  if folds and len(table) < folds:
    raise ConfigError(f'config.fit.cv_folds={folds} needs at least {folds} trials (one per '
                      f'fold); {table.source or "the data"} has {len(table)} after selection. '
                      'Set --config.fit.cv_folds=0 to skip the model comparison.')


def config_dict(config) -> dict:
  """The config as plain JSON types."""
  return json.loads(config.to_json_best_effort()) if hasattr(config, 'to_json_best_effort') \
      else dict(config)


def file_sha256(path: str) -> str:
  """Hex SHA-256 of a file's bytes."""
  h = hashlib.sha256()
  with epath.Path(path).open('rb') as fh:
    for block in iter(lambda: fh.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def _sha(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def input_fingerprint(config, data_path: str) -> dict:
  """What the outputs depend on: data bytes, the resolved data block and the fit block.

  Returns dict(data_file, data_sha256, data (resolved block), fit, key, bns_key): `key` hashes
  everything, `bns_key` everything but the fit fields that do not touch the main BNS fit.
  """
  cfg = config_dict(config)
  # The absolute path is part of the cache key; a cloud path (gs://...) is absolute already.
  data = dict(cfg['data'], path=os.path.abspath(data_path) if workdir_lib.is_local(data_path)
              else data_path)
  for name in data_lib.SELECTION_FIELDS:
    data[name] = data_lib.parse_selection(config.data.get(name), name)
  fit = dict(cfg['fit'])
  for name, value in FIT_DEFAULTS.items():
    fit.setdefault(name, value)
  out = dict(data_file=data['path'], data_sha256=file_sha256(data_path), data=data, fit=fit)
  out['key'] = _sha([out['data_sha256'], data, fit])
  out['bns_key'] = _sha([out['data_sha256'], data,
                         {k: v for k, v in fit.items() if k not in _NOT_BNS_FIELDS}])
  return out


def describe_changes(old: dict | None, new: dict) -> str:
  """Why the cache keyed by `old` (a previous `input_fingerprint`) does not serve `new`."""
  if not old or 'key' not in old:
    return 'no cache key in the previous summary (written by an older version)'
  reasons = []
  if old.get('data_sha256') != new['data_sha256']:
    reasons.append(f'data file {new["data_file"]} changed (sha256 '
                   f'{str(old.get("data_sha256"))[:12]} -> {new["data_sha256"][:12]})')
  for block in ('data', 'fit'):
    a, b = old.get(block, {}), new[block]
    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if fields:
      reasons.append(f'config.{block} changed: ' + ', '.join(
          f'{k} {a.get(k)!r} -> {b.get(k)!r}' for k in fields))
  return '; '.join(reasons) or 'the cache key changed'


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------
