"""The command line as a person runs it: `python -m rnn_behaviour.main` on a tiny config."""

import csv
import json
import os
import subprocess
import sys

from tests import conftest
from tests import tiny
from tests.tiny import compilation_cache  # pylint: disable=unused-import  (a fixture)

TINY_OVERRIDES = tiny.TINY_OVERRIDES


def test_overrides_match_the_tiny_config():
  config = conftest.make_tiny_config()
  for path, value in TINY_OVERRIDES.items():
    node = config
    for part in path.split('.'):
      node = node[part]
    assert node == value, path


def _read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def test_main_trains_evaluates_and_reports_progress(tmp_path, compilation_cache):
  workdir = tmp_path / 'run'
  command = [sys.executable, '-m', 'rnn_behaviour.main',
             '--config=' + os.path.join(conftest.REPO_ROOT, 'rnn_behaviour', 'configs',
                                        'default.py'),
             f'--workdir={workdir}', '--mode=all']
  command += [f'--config.{k}={v}' for k, v in TINY_OVERRIDES.items()]
  # The BNS judgement (two SVI fits, half a minute of compilation) is tested in process by
  # test_train; here it is off to keep the command-line test fast.
  command += ['--config.eval.bns_svi_steps=0']
  env = dict(os.environ, JAX_PLATFORMS='cpu', **tiny.compilation_cache_env(compilation_cache))
  result = subprocess.run(command, cwd=conftest.REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]

  with open(workdir / 'config.json') as f:
    assert json.load(f)['train']['num_steps'] == 4
  steps = [json.loads(line)['step'] for line in open(workdir / 'metrics.jsonl')]
  assert steps == [1, 2, 3, 4]
  assert sorted(os.listdir(workdir / 'checkpoints'))[-1] == '4'

  eval_dir = workdir / 'eval'
  with open(eval_dir / 'summary.json') as f:
    summary = json.load(f)
  assert summary['trained_steps'] == 4
  bins = _read_csv(eval_dir / 'swap_rate_by_cue_distance.csv')
  assert len(bins) == 4
  assert [float(r['bin_centre_rad']) for r in bins] == summary['cue_distance_bins']['centres']
  assert sum(int(r['pairs']) for r in bins) == 8     # 8 two-item displays: 1 non-target each.
  (row,) = _read_csv(eval_dir / 'summary.csv')
  assert int(row['trained_steps']) == 4
  assert float(row['swap_rate.network']) == summary['swap_rate']['network']
  for png in ('response_histograms', 'swap_rate_by_cue_distance', 'training_loss'):
    assert os.path.getsize(eval_dir / f'{png}.png') > 1000

  # What a person follows on the terminal: each evaluation stage, in order, with its time.
  log = result.stderr
  positions = [log.index(f'[{i}/6] evaluate: ') for i in range(1, 7)]
  assert positions == sorted(positions)
  assert '[2/6] evaluate: sample the network: 1/1 chunks' in log
  assert 'Evaluation: swap rate network' in log
