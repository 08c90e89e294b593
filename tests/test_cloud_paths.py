"""Workdir files on a cloud path (gs://) go through etils.epath, object-store rules included.

A real bucket is out of reach here, so epath's own test hook maps `gs://` onto a local folder;
the code under test still takes its cloud branches (no exclusive create, no append, no
atomic rename), which `workdir.is_local` selects from the path's scheme. Orbax's checkpoints
and tensorboardX's events on gs:// use their own GCS clients and are not covered.
"""

import json
import os

from etils import epath
from etils.epath import testing as epath_testing
from matplotlib.figure import Figure
import ml_collections
import numpy as np
import pytest

from rnn_behaviour import checkpoints
from rnn_behaviour import curriculum
from rnn_behaviour import files
from rnn_behaviour import metric_writers
from rnn_behaviour import paper_experiment
from rnn_behaviour import train
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.analysis import report
from rnn_behaviour.analysis import run_paper
from rnn_behaviour.behaviour import bns
from rnn_behaviour.behaviour import bns_files
from rnn_behaviour.behaviour import data
from rnn_behaviour.behaviour import fit_config
from rnn_behaviour.behaviour import mixture
from rnn_behaviour.behaviour import pipeline
from rnn_behaviour.behaviour import source
from rnn_behaviour.behaviour import surrogate
from rnn_behaviour.behaviour import trial_files
from tests import conftest

RUN = 'gs://bucket/runs/one'


class StepFolders:
  """Stands in for Orbax's read-only manager on the mocked bucket (Orbax's own GCS client needs
  a real one): the steps are the workdir's step folders."""

  def __init__(self, workdir, *unused_args, **unused_kwargs):
    self.folder = epath.Path(workdir) / workdir_lib.CHECKPOINT_DIR

  def all_steps(self):
    return [int(p.name) for p in self.folder.iterdir() if p.name.isdigit()]

  def close(self):
    pass


@pytest.fixture
def bucket(tmp_path):
  """gs://... served from tmp_path/gs/... for the duration of a test."""
  root = str(tmp_path / 'gs')

  def local(path):
    return str(path).replace('gs://', root + '/', 1)

  def remote(path):
    return str(path).replace(root + '/', 'gs://', 1)

  def one(fn, path, *args, **kwargs):
    return fn(local(path), *args, **kwargs)

  def two(fn, path, dst, *args, **kwargs):
    return fn(local(path), local(dst), *args, **kwargs)

  def glob(fn, pattern):
    return [remote(p) for p in fn(local(pattern))]

  mocks = dict(open=one, exists=one, isdir=one, listdir=one, makedirs=one, mkdir=one,
               remove=one, rmtree=one, stat=one, rename=two, replace=two, copy=two, glob=glob)
  with epath_testing.mock_epath(**mocks):
    yield tmp_path / 'gs'


def test_cloud_paths_are_recognised():
  assert not workdir_lib.is_local('gs://bucket/run')
  assert not workdir_lib.is_local(epath.Path('s3://bucket/run'))
  assert workdir_lib.is_local('/tmp/run') and workdir_lib.is_local('runs/one')


def test_a_cloud_workdir_is_checked_locked_and_written(bucket):
  workdir_lib.check(RUN)                       # Not there yet: fine, it is created on write.
  with pytest.raises(workdir_lib.WorkdirError, match='does not exist'):
    workdir_lib.check(RUN, needs_checkpoint=True)
  with workdir_lib.lock(RUN) as lock_path:
    assert lock_path == f'{RUN}/{workdir_lib.LOCK_FILE}'
    assert (bucket / 'bucket/runs/one/train.lock').exists()
    with pytest.raises(workdir_lib.WorkdirLocked, match='is being trained by'):
      workdir_lib.acquire(RUN)
  assert not (bucket / 'bucket/runs/one/train.lock').exists()
  workdir_lib.check(RUN)

  metrics = f'{RUN}/metrics.jsonl'
  for step in (1, 2, 3):
    files.append_jsonl(metrics, {'step': step, 'loss': 1.0 / step})
  assert [r['step'] for r in files.read_jsonl(metrics)] == [1, 2, 3]
  files.write_jsonl_atomic(metrics, [{'step': 1}])
  assert files.read_jsonl(metrics) == [{'step': 1}]


def test_a_runs_records_live_in_the_bucket(bucket):
  config = conftest.make_tiny_config()
  train.save_config(config, RUN, {'initialised_from': {'workdir': 'x'}})
  saved = json.loads((bucket / 'bucket/runs/one/config.json').read_text())
  assert saved['train']['num_steps'] == config.train.num_steps
  assert train.load_run_config(RUN).train.num_steps == config.train.num_steps
  train.record_history(config, RUN, 'start', 0)
  train.record_history(config, RUN, 'resume', 2)
  history = files.read_jsonl(f'{RUN}/{train.HISTORY_FILE}')
  assert [h['event'] for h in history] == ['recorded from config.json', 'start', 'resume']

  with metric_writers.MetricWriter(RUN, tensorboard=False) as writer:
    writer.write_scalars(1, {'loss': 0.5})
    writer.write_scalars(2, {'loss': 0.25})
  assert [r['loss'] for r in train.read_metrics(RUN)] == [0.5, 0.25]

  moved = train.supersede(RUN)
  assert moved.startswith(f'{RUN}/{train.SUPERSEDED_DIR}/')
  assert not (bucket / 'bucket/runs/one/metrics.jsonl').exists()
  assert train.read_metrics(moved) == [{'step': 1, 'loss': 0.5}, {'step': 2, 'loss': 0.25}]
  assert (bucket / moved.replace('gs://', '') / 'config.json').exists()


TRIALS = """subject,set_size,cued,response,cue_1,cue_2,report_1,report_2
a,2,1,0.1,0.5,-1.0,0.2,2.5
a,1,1,-3.0,1.5,,3.0,
b,2,2,1.25,-2.0,0.75,1.0,-0.5
"""


def _tiny_fit(set_size: int, draws: int = 5) -> bns.BNSFit:
  """A hand-made BNS fit (no inference): one swap function over 4 basis functions."""
  rng = np.random.default_rng(0)
  samples = dict(swap_mean=rng.normal(size=(draws, 1)), coef=rng.normal(size=(draws, 1, 4)),
                 coef_raw=rng.normal(size=(draws, 1, 4)),
                 guess_logit=rng.normal(-2.0, 0.1, (draws, 1)),
                 kappa=rng.uniform(5, 10, (draws, 1)), lengthscale=rng.uniform(size=(draws, 1)),
                 amplitude=rng.uniform(size=draws))
  return bns.BNSFit(spec=bns.BNSSpec(num_fourier=3), labels=bns.Labels((set_size,), ('',)),
                    samples=samples, info={'cache_key': 'k'},
                    guide_params={'loc': rng.normal(size=7)})


def test_behavioural_data_and_fits_live_in_the_bucket(bucket, tmp_path):
  trials = f'{RUN}/trials.csv'
  epath.Path(RUN).mkdir(parents=True)
  epath.Path(trials).write_text(TRIALS)
  assert data.resolve_path(trials) == trials
  table = data.load_csv(data.resolve_path(trials))
  assert table.num_trials == 3 and list(table.set_size) == [2, 1, 2]
  data.write_csv(table, f'{RUN}/copy.csv')
  data.write_csv(table, str(tmp_path / 'copy.csv'))
  assert (bucket / 'bucket/runs/one/copy.csv').read_bytes() == (tmp_path / 'copy.csv').read_bytes()
  with pytest.raises(ValueError, match='is a directory'):
    trial_files.check_file(RUN)
  inputs = fit_config.input_fingerprint(ml_collections.ConfigDict(dict(
      data=dict(path=trials, format='csv', angle_unit='radians'), fit={})), trials)
  assert inputs['data_file'] == trials and len(inputs['data_sha256']) == 64

  behaviour = f'{RUN}/behaviour'
  fits = mixture.MixtureFits(model='two_component', cells=[('a', 2, '')], kappa=np.ones(1),
                             p_t=np.ones(1), p_n=np.zeros(1), p_u=np.zeros(1),
                             loglik=np.zeros(1), n=np.array([3]))
  mixture.write_fits_csv([fits], f'{behaviour}/mixture_fits.csv', min_trials=30)
  rows = (bucket / 'bucket/runs/one/behaviour/mixture_fits.csv').read_text().splitlines()
  assert rows[0] == ','.join(mixture.FIT_COLUMNS) and 'unreliable' in rows[1]
  pipeline._write_json(f'{behaviour}/summary.json', {'complete': True})
  assert pipeline._read_json(f'{behaviour}/summary.json') == {'complete': True}
  assert pipeline._read_json(f'{behaviour}/missing.json') is None
  assert not list((bucket / 'bucket/runs/one/behaviour').glob('*.tmp'))

  config = conftest.make_tiny_config()
  config.behaviour.source = 'bns'
  fit = _tiny_fit(config.task.num_items)
  bns_files.save(fit, f'{behaviour}/{surrogate.FIT_SUBDIR}', config={'a': 1})
  assert (bucket / 'bucket/runs/one/behaviour/bns_fit/samples.npz').exists()
  loaded = surrogate.load_fit(behaviour)
  for name, value in fit.samples.items():
    np.testing.assert_array_equal(loaded.samples[name], value)
  np.testing.assert_array_equal(loaded.guide_params['loc'], fit.guide_params['loc'])
  assert loaded.labels == fit.labels and loaded.info['config'] == {'a': 1}
  assert source.target_fit_dir(config, RUN) == behaviour
  model = source.target_model_from_config(config, RUN)
  assert model.num_draws == 5
  with pytest.raises(FileNotFoundError, match='no saved BNS fit'):
    bns_files.load(f'{RUN}/elsewhere')


def test_analysis_outputs_and_finished_stages_live_in_the_bucket(bucket, monkeypatch):
  monkeypatch.setattr(checkpoints, 'checkpoint_manager', StepFolders)
  stage = curriculum.stage_workdir(RUN, 'swaps')
  assert stage == f'{RUN}/swaps'
  config = ml_collections.ConfigDict(dict(train=dict(num_steps=10)))
  assert not curriculum.is_finished(config, stage)
  epath.Path(f'{stage}/checkpoints/5').mkdir(parents=True)
  assert not curriculum.is_finished(config, stage)
  epath.Path(f'{stage}/checkpoints/10').mkdir()
  assert curriculum.is_finished(config, stage)

  fig = Figure()
  fig.add_subplot().plot([0, 1], [1, 0])
  paths = report.write_report(f'{stage}/analysis', {'summary': {'x': np.float32(0.5)}},
                              {'lines': fig})
  assert paths == [f'{stage}/analysis/analysis.json', f'{stage}/analysis/lines.png']
  assert json.loads(epath.Path(paths[0]).read_text()) == {'summary': {'x': 0.5}}
  assert epath.Path(paths[1]).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

  folder = epath.Path(run_paper.member_folder(stage, 1))
  assert folder == epath.Path(f'{stage}/{run_paper.PAPER_DIR}/member_1')
  folder.mkdir(parents=True)
  files.write_csv(folder / 'alignment.csv', ('step', 'mean'), [(0, 0.25), (1, np.nan)])
  files.write_csv(folder / 'swap_decision.csv', ('epoch', 'auc', 'chance_upper'),
                       [('delay', 0.5, 0.6), ('response', 0.9, 0.6), ('response', 0.8, 0.6)])
  assert (folder / 'alignment.csv').read_bytes() == b'step,mean\r\n0,0.25\r\n1,NaN\r\n'
  np.testing.assert_array_equal(
      paper_experiment._curves([{}], lambda d: os.fspath(folder)), [[0.25, np.nan]])
  details = paper_experiment._details({'seed': 1, 'prediction': {}}, os.fspath(folder))
  assert details['response_above_chance'] and not details['precue_above_chance']


def test_comparison_tables_and_exported_members_live_in_the_bucket(bucket, tmp_path,
                                                                    monkeypatch):
  import types  # pylint: disable=g-import-not-at-top
  from rnn_behaviour import comparison  # pylint: disable=g-import-not-at-top
  work = f'{RUN}/comparison'
  assert comparison.seed_folder(work, 'diffusion', 4) == f'{work}/diffusion/seed_4'
  rows = [dict(objective='diffusion', seed=s, swap_curve_error=0.1 * s, distance_ratio=1.5 + s,
               circ_sd_error=0.25, heldout_loglik=-1.0 - s, bns_logit_error=0.5) for s in (3, 4)]
  centres = [0.5, 1.5]
  curves = {'diffusion': (centres, [[0.1, 0.2], [0.3, np.nan]]), '__truth__': (centres, [0.2, 0.1])}
  band = dict(distance=[0.5, 1.5], mean=[0.0, -1.0], lower=[-0.5, -1.5], upper=[0.5, -0.5])
  functions = {'diffusion': [dict(network=band, surrogate=band)]}
  function_rows = comparison._swap_function_rows('diffusion', 3, functions['diffusion'][0])
  reference = [dict(observations='2 trials', kde_concentration=50.0, behaviour_model=-0.75)]
  for out in (work, str(tmp_path / 'local')):
    epath.Path(out).mkdir(parents=True)
    table = comparison.write_outputs(out, rows, curves, functions, function_rows, reference)
  cloud, local = bucket / 'bucket/runs/one/comparison', tmp_path / 'local'
  for name in ('comparison.csv', 'swap_functions.csv', 'comparison.md'):
    assert (cloud / name).read_bytes() == (local / name).read_bytes(), name
  assert (cloud / 'comparison.csv').read_bytes().startswith(
      b'objective,seed,swap_curve_error,distance_ratio,circ_sd_error,heldout_loglik\r\n'
      b'diffusion,3,')
  assert (cloud / 'comparison.md').read_text() == table and '-0.750 the same way' in table
  for name in ('comparison.png', 'swap_functions.png'):
    assert (cloud / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

  # An ensemble in <objective>/ exports member 1 to seed_4/ (orbax's save stubbed: it has its
  # own GCS client), replacing a stale export.
  ensemble = f'{work}/diffusion'
  epath.Path(f'{ensemble}/checkpoints/4').mkdir(parents=True)
  epath.Path(f'{ensemble}/config.json').write_text('{}')
  member_metrics = epath.Path(f'{ensemble}/{train.MEMBERS_DIR}/member_1/{train.METRICS_FILE}')
  member_metrics.parent.mkdir(parents=True)
  member_metrics.write_text('{"step": 4, "loss": 0.5}\n')
  run_dir = comparison.seed_folder(work, 'diffusion', 4)
  epath.Path(f'{run_dir}/checkpoints/2').mkdir(parents=True)
  epath.Path(f'{run_dir}/eval').mkdir()
  epath.Path(f'{run_dir}/eval/summary.json').write_text('{"trained_steps": 2}')
  saved = []

  class Manager:
    def __init__(self, directory):
      self.directory = directory

    def save(self, step, args):
      saved.append((self.directory, step, args))
      (epath.Path(self.directory) / workdir_lib.CHECKPOINT_DIR / str(step)).mkdir(parents=True)

    def wait_until_finished(self):
      pass

    def close(self):
      pass

  monkeypatch.setattr(train, 'checkpoint_manager', lambda d, _: Manager(d))
  monkeypatch.setattr(checkpoints, 'checkpoint_manager', StepFolders)
  config = conftest.make_tiny_config()
  config.train.num_steps = 4
  state = types.SimpleNamespace(step=np.int32(4))
  comparison.export_member(config, ensemble, state, 1, 4, run_dir)
  assert [(d, s) for d, s, _ in saved] == [(run_dir, 4)]
  seed_dir = cloud / 'diffusion/seed_4'
  assert sorted(p.name for p in (seed_dir / 'checkpoints').iterdir()) == ['4']
  assert not (seed_dir / 'eval/summary.json').exists()
  assert (seed_dir / train.METRICS_FILE).read_text() == '{"step": 4, "loss": 0.5}\n'
  assert json.loads((seed_dir / comparison.MEMBER_FILE).read_text()) == dict(
      ensemble='..', member=1, seed=4, ensemble_step=4, member_step=4)
  assert train.load_run_config(run_dir).seed == config.seed
  assert checkpoints.latest_step(ensemble) == 4
  with workdir_lib.whole_folder(f'{run_dir}/eval') as out:   # An evaluation, written whole.
    (out / 'summary.json').write_text('{"trained_steps": 3}')
  assert comparison.finished(config, run_dir)          # Its ensemble trained to num_steps.
  assert not comparison.finished(config, comparison.seed_folder(work, 'diffusion', 3))
  spec = ml_collections.ConfigDict(dict(seeds=[3, 4], ensembles=False))
  assert comparison.objective_layout(spec, ensemble, [3, 4]) == 'ensemble'
  epath.Path(f'{ensemble}/config.json').unlink()
  spec.ensembles = True                  # seed_4 is an exported member, not a standalone run.
  assert comparison.objective_layout(spec, ensemble, [3, 4]) == 'ensemble'
  epath.Path(f'{ensemble}/seed_3').mkdir()
  epath.Path(f'{ensemble}/seed_3/config.json').write_text('{}')
  assert comparison.objective_layout(spec, ensemble, [3, 4]) == 'per_seed'
  timings = f'{work}/{comparison.TIMINGS_FILE}'
  comparison._timed(work, {'stage': 'export'}, lambda: None)
  assert [r['stage'] for r in files.read_jsonl(timings)] == ['export']
