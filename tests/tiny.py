"""The sizes of conftest.make_tiny_config as flat config overrides, for runs in other processes
(the command line, notebooks), and a compilation cache those processes share."""

import pytest

TINY_OVERRIDES = {
    'task.epochs.stimulus': 2, 'task.epochs.delay': 3, 'task.epochs.cue': 2,
    'task.epochs.post_cue': 1, 'task.num_tuning': 8,
    'model.num_units': 8, 'model.trial_noise': -1.0, 'model.num_branches': 2,
    'model.num_subbranches': 3,
    'diffusion.num_steps': 6,
    'train.num_steps': 4, 'train.displays_per_batch': 4, 'train.samples_per_display': 4,
    'train.warmup_steps': 1, 'train.log_every': 1, 'train.checkpoint_every': 2,
    'eval.num_displays': 8, 'eval.samples_per_display': 16, 'eval.num_plot_displays': 2,
    'eval.bns_svi_steps': 100,
}

# As tests/test_analyse_mode.py sizes --mode=analyse.
TINY_ANALYSIS = {
    'analysis.num_bins': 4, 'analysis.samples_per_display': 4, 'analysis.num_bootstrap': 4,
    'analysis.num_shuffles': 2, 'analysis.num_fixed_point_starts': 4,
}


def compilation_cache_env(directory: str) -> dict:
  """Environment for JAX's persistent compilation cache in `directory`: processes that compile
  the same tiny programs (the command-line test, each notebook's kernel) compile them once."""
  return {'JAX_COMPILATION_CACHE_DIR': directory,
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
          'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}


@pytest.fixture(scope='session')
def compilation_cache(tmp_path_factory) -> str:
  """A compilation-cache directory shared by the test session's subprocesses."""
  return str(tmp_path_factory.mktemp('jax_compilation_cache'))
