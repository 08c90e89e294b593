"""Fast tests of the slow end-to-end tests' code paths, in this process on the session's
fixtures (tests/conftest.py): what the notebooks' cells call, the TPU worker's command, and the
multi-device training step on a one-device mesh. The slow tests (`-m slow`) run the same code
in new processes: colab/*.ipynb top to bottom, `python -m rnn_behaviour.main`, 8 devices and two
`jax.distributed` processes, the TPU worker twice.
"""

import csv
import importlib.util
import json
import logging
import os
import shutil
import sys

from absl import flags
import jax
from jax.sharding import NamedSharding
import ml_collections
from ml_collections import config_flags
import numpy as np
import pytest

from rnn_behaviour import evaluate
from rnn_behaviour import modes
from rnn_behaviour import parallel
from rnn_behaviour import plots
from rnn_behaviour import task as task_lib
from rnn_behaviour import train
from rnn_behaviour.analysis import run_analysis
from rnn_behaviour.analysis import run_paper
from tests import conftest


# --- One process of the multi-device code (tests/test_parallel.py runs 8 devices, 2 hosts) ---

# The plain layout is slow-only (~8 s): the chunked and ensemble layouts take the same mesh
# path with more on it, and tests/test_parallel.py runs every layout on 8 devices.
@pytest.mark.parametrize('layout', [pytest.param({}, marks=pytest.mark.slow),
                                    {'train.displays_per_chunk': 2},
                                    {'train.ensemble_size': 2}])
def test_the_sharded_step_on_a_one_device_mesh_computes_the_plain_step(tiny_config, layout):
  """train.build(mesh=...) takes the multi-device path (state created on the mesh by a jitted
  initialiser, the step jitted with explicit in/out shardings, the displays constrained to the
  mesh) even on one device; it must compute what the plain single-device step computes."""
  tiny_config.update_from_flattened_dict(layout)
  mesh = parallel.make_mesh(tiny_config)
  assert dict(mesh.shape) == {'members': 1, 'displays': 1}
  seeds = train.member_seeds(tiny_config)
  results = []
  for on in (None, mesh):
    built = train.build(tiny_config, mesh=on)
    state = train.init_states(built, seeds)
    step = train.train_step_fn(built, seeds)
    losses = []
    for _ in range(2):
      state, metrics, ok = step(state)
      assert np.all(np.asarray(ok))
      losses.append(np.asarray(metrics['loss']))
    if on is not None:
      leaf = jax.tree_util.tree_leaves(state.params)[0]
      assert isinstance(leaf.sharding, NamedSharding) and leaf.sharding.mesh == mesh
    results.append((losses, train.to_host(state.params)))
  (plain_losses, plain_params), (mesh_losses, mesh_params) = results
  np.testing.assert_allclose(mesh_losses, plain_losses, rtol=2e-4)
  for a, b in zip(jax.tree_util.tree_leaves(mesh_params), jax.tree_util.tree_leaves(plain_params)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


# --- The TPU worker's command (tests/test_tpu_launcher.py runs it in two processes) -----------

def _launcher():
  path = os.path.join(conftest.REPO_ROOT, 'experiments', 'tpu', 'launch.py')
  spec = importlib.util.spec_from_file_location('tpu_launch_fast', path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module          # dataclasses look the module up while it loads.
  spec.loader.exec_module(module)
  return module


def _main_flags(argv: list[str]) -> flags.FlagValues:
  """The entry point's --config/--workdir/--mode flags, parsed from `argv` without app.run."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'Config file.', flag_values=values,
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Workdir.', flag_values=values)
  flags.DEFINE_enum('mode', 'all', modes.MODES, 'Mode.', flag_values=values)
  values(argv)
  return values


def test_the_tpu_worker_command_resumes_a_trained_run(trained_run, tmp_path, monkeypatch,
                                                      caplog):
  launch = _launcher()
  workdir = conftest.copy_run(trained_run, tmp_path / 'run')
  opts = launch.Options(name='rnn-v4', zone='us-central2-b', accelerator_type='v4-32',
                        config='rnn_behaviour/configs/tiny.py', workdir=workdir, mode='train',
                        allow_local_workdir=True, repo=conftest.REPO_ROOT)
  launch.validate(opts)
  command = launch.worker_command(opts, python=sys.executable)
  assert command[:3] == [sys.executable, '-m', 'rnn_behaviour.main']
  monkeypatch.chdir(conftest.REPO_ROOT)     # The worker runs from the repository's root.
  parsed = _main_flags([command[0]] + command[3:])
  assert (parsed.workdir, parsed.mode) == (workdir, 'train')
  latest = os.path.join(workdir, 'checkpoints', '4')
  stamp = os.path.getmtime(latest)
  with caplog.at_level(logging.INFO):
    modes.run(parsed.config, parsed.workdir, parsed.mode)
  # The worker's command resumed the finished run: nothing retrained, nothing rewritten.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')))[-1] == '4'
  assert os.path.getmtime(latest) == stamp
  assert [r['step'] for r in train.read_metrics(workdir)] == [1, 2, 3, 4]


# --- What the notebooks' cells call (tests/test_notebooks.py runs them in kernels) ------------

def test_the_mechanisms_notebook_design_grid_on_a_trained_run(trained_run, tmp_path):
  """colab/mechanisms.ipynb with RUN_DIR set, its first analysis: the design grid, the details
  and the figures the notebook shows. (quickstart.ipynb's cells are test_train's end-to-end
  run, the fixture, and test_analyse_mode's design-grid analysis.)"""
  workdir = conftest.copy_run(trained_run, tmp_path / 'run')
  config = conftest.mechanisms_notebook_config(workdir)
  numbers = run_analysis.analyse(config, workdir)
  details = run_analysis.mechanism_details(numbers, task_lib.epochs_from_config(config))
  assert 0.0 <= details['alignment_delay_end'] <= 1.0
  assert 0.0 <= details['alignment_response_onset'] <= 1.0
  assert numbers['swap_decoding']['num_swaps'] >= 0 and numbers['pca']['dimensions_for_90'] >= 1
  for name in ('alignment', 'swap_auc', 'cross_temporal', 'pca', 'fixed_points'):
    assert os.path.getsize(os.path.join(workdir, 'analysis', f'{name}.png')) > 1000


def test_the_mechanisms_notebook_paper_protocol_on_a_trained_run(paper_analysed_run, tmp_path):
  """colab/mechanisms.ipynb's second analysis: the paper's protocol on the run (the fixture
  runs it; here it is read back)."""
  workdir = conftest.copy_run(paper_analysed_run, tmp_path / 'run')
  config = conftest.mechanisms_notebook_config(workdir)
  (paper,) = run_paper.analyse(config, workdir)       # One network: one summary.
  for key in run_paper.SUMMARY_KEYS + ('swap_decided_from',):
    assert key in paper, key
  # The authors' variant (the default) on the tiny task: its 3 cue pairs on the 8-grid (45, 90
  # and 135 degrees), and a time axis of 3 delay + 2 cue + 6 response steps (no post-cue step).
  assert paper['settings']['variant'] == 'authors' and paper['settings']['num_pairs'] == 3
  assert np.isfinite(paper['alignment_precue'])
  folder = run_paper.member_folder(workdir, None)
  with open(os.path.join(folder, 'alignment.csv')) as f:
    epochs = [row['epoch'] for row in csv.DictReader(f)]
  assert epochs == ['delay'] * 3 + ['cue'] * 2 + ['response'] * 6
  with open(os.path.join(folder, 'alignment_per_pair.csv')) as f:
    assert len(list(csv.DictReader(f))) == 3 * len(epochs)
  for name in ('alignment', 'precue_vs_distance', 'swap_decision'):
    assert os.path.getsize(os.path.join(folder, f'{name}.png')) > 1000


@pytest.fixture(scope='session')
def bays_trained(bays_fit, tmp_path_factory) -> str:
  """`bays_fit` with a tiny network trained on the fit's posterior predictive (colab/
  your_data.ipynb's training cell), once for the session. Read-only."""
  def build(workdir):
    shutil.copytree(bays_fit, workdir)
    modes.run(conftest.bays_fit_config(), workdir, 'train')
  return conftest.built_once(tmp_path_factory, 'bays_trained', build)


def test_the_your_data_notebook_trains_and_evaluates_on_a_fit_of_bays2009(bays_trained,
                                                                          tmp_path):
  """colab/your_data.ipynb after its fit: the network trained on the BNS fit's posterior
  predictive (the fixture), evaluated against it."""
  workdir = conftest.copy_run(bays_trained, tmp_path / 'run')
  config = conftest.bays_fit_config()
  summary = json.loads(open(os.path.join(workdir, 'behaviour', 'summary.json')).read())
  assert summary['complete'] and summary['num_trials'] > 0
  assert [r['step'] for r in train.read_metrics(workdir)] == list(
      range(1, config.train.num_steps + 1))
  modes.run(config, workdir, 'evaluate')
  with open(os.path.join(workdir, 'eval', 'summary.json')) as f:
    assert json.load(f)['trained_steps'] == config.train.num_steps
  for name in ('swap_rate_by_cue_distance', 'response_histograms'):
    assert os.path.getsize(os.path.join(workdir, 'eval', f'{name}.png')) > 1000


def test_the_your_data_notebook_judges_the_network_on_the_real_trials(bays_trained, tmp_path):
  """colab/your_data.ipynb's last cells: the trained network judged on the real trials, and
  the comparison figure."""
  workdir = conftest.copy_run(bays_trained, tmp_path / 'run')
  config = conftest.bays_fit_config()
  judged = evaluate.judge_on_trials(config, workdir, 2)
  assert judged['num_trials'] > 0
  assert judged['errors']['network'].shape == (2 * judged['num_trials'],)
  assert np.isfinite(judged['heldout_loglik']['network'])
  plots.network_vs_trials(judged, os.path.join(workdir, 'eval', 'network_vs_trials.png'))
  assert os.path.getsize(os.path.join(workdir, 'eval', 'network_vs_trials.png')) > 1000


# --- The objectives comparison (tests/test_compare_objectives.py runs two of them) ------------

def test_a_one_run_comparison_writes_its_tables_and_is_not_repeated(tmp_path):
  """comparison.compare's whole path (train, evaluate, tables, figures, skip when finished) on
  one objective and one seed of the tiny config, 4 steps, no BNS judgement."""
  from rnn_behaviour import comparison  # pylint: disable=g-import-not-at-top
  overrides = {section: conftest.make_tiny_config()[section].to_dict()
               for section in ('task', 'model', 'diffusion', 'train', 'eval')}
  overrides['eval']['bns_svi_steps'] = 0     # 4 steps: the tiny run's compiled program.
  spec = ml_collections.ConfigDict(dict(
      base='default', seeds=[0], objectives={'diffusion': ('diffusion', 'full')},
      overrides=overrides))
  rows = comparison.compare(spec, str(tmp_path))
  assert [(r['objective'], r['seed']) for r in rows] == [('diffusion', 0)]
  with open(tmp_path / 'comparison.csv') as f:
    table = f.read().splitlines()
  assert table[0] == ','.join(comparison.COLUMNS) and len(table) == 2
  assert '| diffusion | 1 |' in (tmp_path / 'comparison.md').read_text()
  assert os.path.getsize(tmp_path / 'comparison.png') > 1000
  timings = (tmp_path / comparison.TIMINGS_FILE).read_text().splitlines()
  # Read back, not recomputed: the same rows (NaN cells equal NaN) and no new timings.
  np.testing.assert_equal(comparison.compare(spec, str(tmp_path)), rows)
  assert (tmp_path / comparison.TIMINGS_FILE).read_text().splitlines() == timings
