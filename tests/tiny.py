"""Helpers for runs of the tiny config (rnn_behaviour/configs/tiny.py) in other processes: its
path for `--config=`, its sizes as flat overrides (for notebooks' CONFIG_OVERRIDES), and the
session's compilation cache."""

import os

import jax
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


def init_network(network, task_config, seed: int = 0):
  """`network.init` at `jax.random.key(seed)` for the inputs of `task_config`, jitted: Flax's
  init op by op compiles every op on its own (~3 s for the tiny network, 0.6 s jitted). Equal
  to the eager init to float32 rounding, not bit for bit (tests/test_authors_preset.py keeps the
  eager one, whose numbers it pins)."""
  from rnn_behaviour import train  # pylint: disable=g-import-not-at-top
  size = train.input_size(task_config)
  return jax.jit(lambda key: network.init(key, size))(jax.random.key(seed))


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
