"""Helpers for runs of the tiny config (rnn_behaviour/configs/tiny.py) in other processes: its
path for `--config=`, its sizes as flat overrides (for notebooks' CONFIG_OVERRIDES), and the
session's compilation cache."""

import os

import pytest

from rnn_behaviour.configs import default
from rnn_behaviour.configs import tiny

CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'rnn_behaviour', 'configs', 'tiny.py')


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def overrides(sections=None) -> dict:
  """The tiny config's fields that differ from the default config, as {'dotted.name': value};
  only those under `sections` (e.g. ('task', 'model')) when given."""
  small = _flatten(tiny.get_config().to_dict())
  base = _flatten(default.get_config().to_dict())
  return {k: v for k, v in small.items()
          if base.get(k) != v and (sections is None or k.split('.')[0] in sections)}


def compilation_cache_env(directory: str) -> dict:
  """Environment for JAX's persistent compilation cache in `directory`: processes that compile
  the same tiny programs (the command-line test, each notebook's kernel) compile them once."""
  return {'JAX_COMPILATION_CACHE_DIR': directory,
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
          'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}


@pytest.fixture(scope='session')
def compilation_cache() -> str:
  """The test session's compilation-cache folder (tests/conftest.py), which subprocesses share."""
  return os.environ['JAX_COMPILATION_CACHE_DIR']
