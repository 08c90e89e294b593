"""The command line as a person runs it: `python -m rnn_behaviour.main` on the tiny config.

The subprocess run is slow (JAX starts and compiles in a new process); the fast test beside it
loads the same config file through the same flags in this process and evaluates a copy of the
session's trained run, checking what the terminal shows.
"""

import csv
import json
import logging
import os
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from rnn_behaviour import modes
from tests import conftest
from tests import tiny
from tests.tiny import compilation_cache  # pylint: disable=unused-import  (a fixture)


def _read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


@pytest.mark.slow   # A new process: JAX's start-up and compilation. Fast: the test below.
def test_main_trains_evaluates_and_reports_progress(tmp_path, compilation_cache):
  workdir = tmp_path / 'run'
  command = [sys.executable, '-m', 'rnn_behaviour.main', '--config=' + tiny.CONFIG_PATH,
             f'--workdir={workdir}', '--mode=all']
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
  _assert_evaluation_progress(result.stderr)


def _assert_evaluation_progress(log: str):
  positions = [log.index(f'[{i}/6] evaluate: ') for i in range(1, 7)]
  assert positions == sorted(positions)
  assert '[2/6] evaluate: sample the network: 1/1 chunks' in log
  assert 'Evaluation: swap rate network' in log


def test_the_config_file_and_its_flags_evaluate_a_run(trained_run, tmp_path, caplog,
                                                       monkeypatch):
  """The subprocess test's path in this process: tiny.py through `--config=` and a
  `--config.` override, then the entry point's call, on a copy of the trained run."""
  argv = ['main', '--config=' + tiny.CONFIG_PATH, '--config.eval.bns_svi_steps=0']
  # config_flags defines the --config.<field> overrides from sys.argv when the flag is defined.
  monkeypatch.setattr(sys, 'argv', argv)
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'Config file.', flag_values=values,
                                  lock_config=True)
  values(argv)
  config = values.config
  assert config.eval.bns_svi_steps == 0 and config.train.num_steps == 4
  assert config.model.num_units == conftest.make_tiny_config().model.num_units
  workdir = conftest.copy_run(trained_run, tmp_path / 'run')
  with caplog.at_level(logging.INFO):
    modes.run(config, workdir, 'evaluate')
  _assert_evaluation_progress(caplog.text)
  with open(os.path.join(workdir, 'eval', 'summary.json')) as f:
    summary = json.load(f)
  assert summary['trained_steps'] == 4
  (row,) = _read_csv(os.path.join(workdir, 'eval', 'summary.csv'))
  assert float(row['swap_rate.network']) == summary['swap_rate']['network']
