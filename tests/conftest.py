"""Shared test set-up: the tiny config, JAX's compilation settings, and tiny runs trained once.

The environment is set here, before any test module imports JAX:
- one CPU device (tests that need more start their own process);
- JAX's persistent compilation cache in one folder for the whole session. Every `train.build()`
  makes new closures, so every training would otherwise compile its step again; with the cache
  the second compilation of the same program is a file read. Subprocesses (the command line,
  notebooks' kernels, the multi-device workers) inherit the variables and share the folder;
- XLA:CPU's cheap code generation (optimisation level 0, no expensive LLVM passes, the classic
  loop emitters instead of the MLIR fusion emitters), as Flax's own tests reduce XLA's
  optimisation: tiny programs compile 2-3x faster (a tiny training's first compile 39 s
  against 93 s under load, at level 0; the tiny train step 3.7 s -> 1.8 s with the classic
  emitters too, which took the fast suite from 5 min 16 s to 4 min 05 s). It changes float
  rounding in the last bits, so tests compare numbers recorded without it to float32 rounding,
  and tests/test_authors_preset.py's slow twin checks them bit for bit in a process without
  these flags. RNN_BEHAVIOUR_TEST_FAST_COMPILE=0 turns it off.
A variable already set in the environment wins, e.g. JAX_COMPILATION_CACHE_DIR=~/.cache/x to
keep the cache between sessions.

Session fixtures train the tiny config once (`trained_run`, `trained_ensemble`) and fit the
behavioural models once to a slice of Bays 2009 (`bays_fit`), once for the whole session even
with pytest-xdist's workers (`built_once`: the first worker to need one builds it, the others
wait for it and read it); they are read-only, and a test that changes a run takes a copy
(`copy_run`).
"""

import atexit
import fcntl
import os
import pathlib
import shutil
import tempfile
from typing import Callable

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO_ROOT, '..', 'shared', 'data')
BAYS2009 = os.path.join(SHARED_DATA, 'bays2009', 'bays_data.mat')

# XLA:CPU at optimisation level 0, without LLVM's expensive passes or the MLIR fusion emitters
# (see above).
FAST_COMPILE_FLAGS = ('--xla_backend_optimization_level=0',
                      '--xla_llvm_disable_expensive_passes=true',
                      '--xla_cpu_use_fusion_emitters=false')


def _configure_jax_environment() -> str:
  """Sets the session's XLA flags and compilation cache (see the module docstring); returns the
  cache folder."""
  flags = os.environ.get('XLA_FLAGS', '').split()
  if not any(f.startswith('--xla_force_host_platform_device_count') for f in flags):
    flags.append('--xla_force_host_platform_device_count=1')
  if os.environ.get('RNN_BEHAVIOUR_TEST_FAST_COMPILE', '1') != '0':
    names = {f.split('=')[0] for f in flags}
    flags += [f for f in FAST_COMPILE_FLAGS if f.split('=')[0] not in names]
  os.environ['XLA_FLAGS'] = ' '.join(flags)
  if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    folder = tempfile.mkdtemp(prefix='rnn_behaviour_jax_cache_')
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ['JAX_COMPILATION_CACHE_DIR'] = folder
  # Cache every program: the tiny ones compile in well under the default 1 s threshold.
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
  return os.environ['JAX_COMPILATION_CACHE_DIR']


COMPILATION_CACHE = _configure_jax_environment()

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax

from rnn_behaviour import modes
from rnn_behaviour import train
from rnn_behaviour.analysis import run_analysis
from rnn_behaviour.analysis import run_paper
from rnn_behaviour.configs import bays2009_pipeline
from rnn_behaviour.configs import tiny
from tests import tiny as tiny_helpers
# pylint: enable=g-import-not-at-top,wrong-import-position

# In case a plugin imported JAX before this file ran: the same settings through its config.
jax.config.update('jax_compilation_cache_dir', COMPILATION_CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)

# The fast suite's budget for one test (its call; session fixtures are built once): a fast test
# over it belongs in the slow suite, with a fast twin. Reported at the end of the run, never
# asserted (a shared machine's timings vary too much to fail on).
FAST_TEST_BUDGET_S = 15.0
_OVER_BUDGET = []


def pytest_runtest_logreport(report):
  if (report.when == 'call' and report.duration > FAST_TEST_BUDGET_S
      and 'slow' not in report.keywords):
    _OVER_BUDGET.append((report.duration, report.nodeid))


def pytest_terminal_summary(terminalreporter):
  if _OVER_BUDGET:
    terminalreporter.section(f'fast tests over the {FAST_TEST_BUDGET_S:g} s budget')
    for duration, nodeid in sorted(_OVER_BUDGET, reverse=True):
      terminalreporter.write_line(f'{duration:6.1f} s  {nodeid}')
    terminalreporter.write_line('Mark each slow and give it a fast twin (README, "Tests").')


def make_tiny_config():
  """rnn_behaviour/configs/tiny.py's config (a fresh, mutable copy)."""
  return tiny.get_config()


@pytest.fixture
def tiny_config():
  return make_tiny_config()


def copy_run(source: str, destination) -> str:
  """A private copy of a session fixture's workdir, for a test that changes it."""
  destination = str(destination)
  shutil.copytree(source, destination)
  return destination


def built_once(tmp_path_factory, name: str, build: Callable[[str], None]) -> str:
  """`build(workdir)` run once per test session, shared by pytest-xdist's workers: returns
  the workdir.

  The workdir lies in the session's temporary folder (the parent of the workers' own), under a
  file lock: the first worker to ask builds it and marks it finished; the others wait on the
  lock and read it. A build that failed (no mark) is removed and built again by the next
  worker to ask, so its error shows in every test that needs it."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent
  folder = pathlib.Path(root) / f'built_once_{name}'
  workdir, finished = folder / 'run', folder / 'FINISHED'
  with open(f'{folder}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not finished.exists():
      shutil.rmtree(folder, ignore_errors=True)
      folder.mkdir()
      build(str(workdir))
      finished.touch()
  return str(workdir)


def _train_and_evaluate_tiny(workdir: str):
  modes.run(make_tiny_config(), workdir, 'all')


def _train_tiny_ensemble(workdir: str):
  config = make_tiny_config()
  config.train.ensemble_size = 2
  train.train(config, workdir)


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory) -> str:
  """The tiny config trained (4 steps, checkpoints 2 and 4) and evaluated (`--mode=all`, the
  BNS judgement included). Read-only: copy it with `copy_run` to change it."""
  return built_once(tmp_path_factory, 'trained_run', _train_and_evaluate_tiny)


@pytest.fixture(scope='session')
def trained_ensemble(tmp_path_factory) -> str:
  """The tiny config as an ensemble of 2 (seeds 0 and 1), trained 4 steps, not evaluated.
  Read-only: copy it with `copy_run` to change it."""
  return built_once(tmp_path_factory, 'trained_ensemble', _train_tiny_ensemble)


def mechanisms_notebook_config(workdir: str):
  """colab/mechanisms.ipynb's config with RUN_DIR set: the run's own, at tiny analysis sizes."""
  config = run_analysis.load_run_config(workdir)
  config.update_from_flattened_dict(tiny_helpers.overrides(('analysis',)))
  config.analysis.update(dict(pair_rotations=1, report_values=6, reported_bins=6,
                              swap_displays=16))
  return config


@pytest.fixture(scope='session')
def paper_analysed_run(trained_run, tmp_path_factory) -> str:
  """`trained_run` analysed with the paper's protocol (colab/mechanisms.ipynb's second
  analysis: `run_paper.analyse` at `mechanisms_notebook_config`), its analysis_paper/ folder
  complete, so a second `analyse` reads it back. Read-only: copy it with `copy_run`."""
  def build(workdir):
    shutil.copytree(trained_run, workdir)
    run_paper.analyse(mechanisms_notebook_config(workdir), workdir)
  return built_once(tmp_path_factory, 'paper_analysed_run', build)


def bays_fit_config():
  """colab/your_data.ipynb's config at tiny sizes: the Bays 2009 pipeline
  (rnn_behaviour/configs/bays2009_pipeline.py) on a small slice of the data (subjects 1 and 2,
  set size 2), mixtures by EM and BNS over cue distance by 20 SVI steps, no CV; the network at
  the tiny config's sizes, trained on the fit's posterior predictive."""
  config = bays2009_pipeline.get_config()
  config.update_from_flattened_dict(tiny_helpers.overrides(
      ('task', 'model', 'diffusion', 'train', 'eval', 'analysis')))
  config.eval.bns_svi_steps = 0
  config.data.path = BAYS2009
  config.data.subjects = ('1', '2')
  config.data.set_sizes = (2,)
  config.fit.update(mixture_models=['three_component'], num_fourier=2, guide='normal',
                    svi_steps=20, cv_folds=0, num_posterior_samples=20, ppc_draws=5)
  return config


@pytest.fixture(scope='session')
def bays_fit(tmp_path_factory) -> str:
  """A workdir whose `behaviour/` holds `bays_fit_config()`'s fit (`--mode=fit_behaviour`);
  skips when ../shared/data has no Bays 2009 file. Read-only: copy it with `copy_run`."""
  if not os.path.exists(BAYS2009):
    pytest.skip(f'no {BAYS2009}')
  return built_once(tmp_path_factory, 'bays_fit',
                    lambda workdir: modes.run(bays_fit_config(), workdir, 'fit_behaviour'))
