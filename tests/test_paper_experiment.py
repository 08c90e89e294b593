"""experiments/paper_mechanisms.py end to end at tiny sizes: chains trained as ensembles,
analysed with the paper protocol, tabulated and plotted; nothing redone on a second call."""

import csv
import os

import ml_collections
import pytest

from rnn_behaviour import paper_experiment
from rnn_behaviour.configs import paper_targets
from tests import conftest

TINY = dict(
    task=dict(num_tuning=8, cue_grid=0, epochs=dict(stimulus=2, delay=3, cue=2, post_cue=1)),
    model=dict(num_units=8, trial_noise=-1.0), diffusion=dict(num_steps=6),
    train=dict(num_steps=2, displays_per_batch=4, samples_per_display=4, warmup_steps=1,
               log_every=1, checkpoint_every=2, ensemble_size=2),
    eval=dict(bns_svi_steps=0))


def _chain(stages):
  config = ml_collections.ConfigDict()
  config.base = 'default'
  config.overrides = TINY
  config.stages = stages
  return config


def tiny_experiment():
  stage = paper_targets._stage  # pylint: disable=protected-access
  config = ml_collections.ConfigDict()
  config.chains = ml_collections.ConfigDict()
  config.chains.probe = _chain((stage('task_optimal', 'task_optimal', 'no_swaps', 2),
                                stage('smooth', 'diffusion', 'smooth', 2)))
  config.chains.index = _chain((stage('no_swaps', 'diffusion', 'no_swaps', 2,
                                      task=dict(cueing='index')),))
  config.targets = (('probe', 'smooth', 'smooth'), ('probe', 'task_optimal', 'task_optimal'),
                    ('index', 'no_swaps', 'no_swaps'))
  config.overrides = ml_collections.ConfigDict(dict(analysis=dict(
      samples_per_display=4, pair_rotations=1, report_values=6, reported_bins=6,
      pair_distance_step=1.0, swap_displays=16, num_shuffles=2, num_bootstrap=20)))
  config.noise_sweep = (0.0,)
  config.noise_sweep_stage = 'smooth'
  config.noise_sweep_ensemble = 1
  return config


# Slow: three chains trained as ensembles and analysed (2-4 min on 2 cores). Fast tests of its
# parts: test_curriculum's chained stages, test_cloud_paths' experiment tables and curves.
@pytest.mark.slow
def test_paper_mechanisms_experiment(tmp_path):
  workdir = str(tmp_path / 'experiment')
  tables = paper_experiment.run(tiny_experiment(), workdir, noise_sweep=True)
  with open(os.path.join(workdir, 'paper_mechanisms.csv')) as f:
    reader = csv.DictReader(f)
    rows = list(reader)
  assert tuple(reader.fieldnames) == paper_experiment.COLUMNS
  assert {(r['cueing'], r['target']) for r in rows} == {
      ('probe', 'smooth'), ('probe', 'task_optimal'), ('index', 'no_swaps')}
  assert sorted(int(r['seed']) for r in rows if r['target'] == 'smooth') == [0, 1]
  assert all(0.0 <= float(r['swap_rate']) <= 1.0 for r in rows)
  # Two-step networks did not learn: counted, not interpreted.
  assert all(r['learned'] == 'False' and float(r['trial_noise']) > 0 for r in rows)
  assert '| probe | smooth |' in tables['main'] and '| 0 of 2 |' in tables['main']
  assert 'not interpreted (no network learned)' in tables['main']
  assert 'noise 0' in tables['noise']
  for name in ('paper_alignment.png', 'paper_precue_vs_distance.png', 'noise_sweep.png',
               'paper_mechanisms.md', 'noise_sweep.csv'):
    assert os.path.getsize(os.path.join(workdir, name)) > 100, name
  # The smooth stage started from the task-optimal one, as the curriculum says.
  stamp = os.path.getmtime(os.path.join(workdir, 'probe', 'smooth', 'analysis_paper',
                                        'member_0', 'summary.json'))
  paper_experiment.run(tiny_experiment(), workdir)
  assert stamp == os.path.getmtime(os.path.join(workdir, 'probe', 'smooth', 'analysis_paper',
                                                'member_0', 'summary.json'))


def test_one_network_through_the_experiment(paper_analysed_run, tmp_path):
  """The fast twin of the test above, on the session's tiny run analysed the paper's way: a
  chain of one stage whose config is the tiny config, so the run copied in is that stage
  finished and analysed (read back: the experiment neither retrains nor reanalyses it), then
  tabulated and plotted; the noise sweep's curriculum checked as a config (the slow test trains
  and analyses it)."""
  experiment = tiny_experiment()
  experiment.chains = ml_collections.ConfigDict()
  experiment.chains.probe = ml_collections.ConfigDict(dict(
      base=conftest.make_tiny_config(), overrides={},
      stages=(dict(name='smooth', start_from='', overrides={}),)))
  experiment.overrides = ml_collections.ConfigDict()
  experiment.targets = (('probe', 'smooth', 'smooth'),)
  workdir = str(tmp_path / 'experiment')
  conftest.copy_run(paper_analysed_run, os.path.join(workdir, 'probe', 'smooth'))
  tables = paper_experiment.run(experiment, workdir)
  with open(os.path.join(workdir, 'paper_mechanisms.csv')) as f:
    reader = csv.DictReader(f)
    rows = list(reader)
  assert tuple(reader.fieldnames) == paper_experiment.COLUMNS
  assert [(r['cueing'], r['target'], r['seed']) for r in rows] == [('probe', 'smooth', '0')]
  row = rows[0]
  assert 0.0 <= float(row['swap_rate']) <= 1.0 and 0.0 < float(row['target_swap_rate']) < 1.0
  assert row['learned'] == 'False' and float(row['trial_noise']) > 0
  assert '| probe | smooth |' in tables['main'] and '| 0 of 1 |' in tables['main']
  assert 'not interpreted (no network learned)' in tables['main'] and 'noise' not in tables
  for name in ('paper_alignment.png', 'paper_precue_vs_distance.png', 'paper_mechanisms.md'):
    assert os.path.getsize(os.path.join(workdir, name)) > 100, name
  summary = os.path.join(workdir, 'probe', 'smooth', 'analysis_paper', 'summary.json')
  stamp = os.path.getmtime(summary)
  assert paper_experiment.run(experiment, workdir)['main'] == tables['main']
  assert os.path.getmtime(summary) == stamp
  # The sweep's chain: the noise level and the sweep's ensemble size in its overrides.
  sweep = paper_experiment.chain_curriculum(tiny_experiment(), 'probe', 0.25)
  assert sweep.overrides['model']['trial_noise'] == 0.25
  assert sweep.overrides['train']['ensemble_size'] == 1
  assert sweep.overrides['analysis']['num_bootstrap'] == 20


@pytest.mark.parametrize('targets, sweep_stage, message', [
    ((('probe', 'smooth', 'flat'),), 'smooth',
     r"targets\[0\] = \('probe', 'smooth', 'flat'\): chain 'probe' has no stage 'flat'"),
    ((('colour', 'smooth', 'smooth'),), 'smooth', r"no chain 'colour' in experiment.chains"),
    ((), 'flat', r"noise_sweep_stage: chain 'probe' has no stage 'flat'"),
    ((('index', 'no_swaps', 'no_swaps'),), None, r"retrains the chain 'probe'"),
])
def test_a_target_or_sweep_stage_that_does_not_exist_fails_before_training(
    tmp_path, targets, sweep_stage, message):
  experiment = tiny_experiment()
  experiment.targets = targets
  if sweep_stage is None:
    del experiment.chains['probe']
  else:
    experiment.noise_sweep_stage = sweep_stage
  with pytest.raises(ValueError, match=message):
    paper_experiment.run(experiment, str(tmp_path / 'experiment'), noise_sweep=True)
  assert not os.path.exists(tmp_path / 'experiment')
