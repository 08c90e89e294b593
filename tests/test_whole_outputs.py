"""Evaluation and analysis outputs appear whole or not at all (issue 18, item 3).

`workdir.whole_folder` writes a folder in a temporary sibling and moves it into place with its
completeness marker; every reader (`evaluate.read_summary`, `run_analysis.read_numbers`,
`comparison.finished`) treats a folder without the marker as absent.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

from etils import epath
from etils.epath import testing as epath_testing
import pytest

from rnn_behaviour import comparison
from rnn_behaviour import evaluate
from rnn_behaviour import train
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.analysis import run_analysis
from tests import conftest


def _write(folder, **files):
  for name, text in files.items():
    (epath.Path(folder) / name).write_text(text)


def _listing(folder):
  return sorted(os.listdir(folder))


def test_a_whole_folder_replaces_the_old_one_with_its_marker(tmp_path):
  out = tmp_path / 'eval'
  with workdir_lib.whole_folder(out) as scratch:
    _write(scratch, **{'summary.json': '{"step": 1}', 'old_figure.png': 'x'})
    assert not out.exists()                     # Nothing is visible while it is written.
  assert workdir_lib.is_complete(out)
  with workdir_lib.whole_folder(out) as scratch:
    _write(scratch, **{'summary.json': '{"step": 2}'})
  # The new folder, not a mix: the old figure is gone with the old folder.
  assert _listing(out) == [workdir_lib.COMPLETE_MARKER, 'summary.json']
  assert (out / 'summary.json').read_text() == '{"step": 2}'
  assert _listing(tmp_path) == ['eval']         # No scratch left beside it.


def test_an_error_while_writing_leaves_the_old_folder_as_it_was(tmp_path):
  out = tmp_path / 'eval'
  with workdir_lib.whole_folder(out) as scratch:
    _write(scratch, **{'summary.json': '{"step": 1}', 'figure.png': 'step 1'})
  with pytest.raises(RuntimeError, match='disk full'):
    with workdir_lib.whole_folder(out) as scratch:
      _write(scratch, **{'summary.json': '{"step": 2}'})
      raise RuntimeError('disk full')
  assert (out / 'summary.json').read_text() == '{"step": 1}'
  assert (out / 'figure.png').read_text() == 'step 1'
  assert _listing(tmp_path) == ['eval']


def test_a_kill_while_writing_leaves_the_old_folder_and_its_scratch_is_cleared(tmp_path):
  out = tmp_path / 'eval'
  with workdir_lib.whole_folder(out) as scratch:
    _write(scratch, **{'summary.json': '{"step": 20}', 'figure.png': 'step 20'})
  # A process killed (SIGKILL: no cleanup of any kind) half way through writing step 30.
  script = textwrap.dedent(f'''
      import os, signal
      from rnn_behaviour import workdir
      with workdir.whole_folder({str(out)!r}) as scratch:
        (scratch / 'summary.json').write_text('{{"step": 30}}')
        os.kill(os.getpid(), signal.SIGKILL)
      ''')
  killed = subprocess.run([sys.executable, '-c', script], cwd=conftest.REPO_ROOT, check=False)
  assert killed.returncode == -signal.SIGKILL
  assert json.loads((out / 'summary.json').read_text()) == {'step': 20}
  assert (out / 'figure.png').read_text() == 'step 20'
  assert workdir_lib.is_complete(out)
  assert len(_listing(tmp_path)) == 2                       # eval and the dead one's scratch.
  with workdir_lib.whole_folder(out, keep_existing=True) as scratch:
    _write(scratch, **{'extra.png': 'added'})
  assert _listing(tmp_path) == ['eval']                     # The stale scratch is removed.
  assert _listing(out) == [workdir_lib.COMPLETE_MARKER, 'extra.png', 'figure.png',
                           'summary.json']


def test_readers_treat_a_folder_without_its_marker_as_absent(tmp_path):
  run_dir = tmp_path / 'seed_0'
  (run_dir / 'eval').mkdir(parents=True)
  # What an interrupted evaluation of this morning's code left: a summary, no marker.
  _write(run_dir / 'eval', **{'summary.json': json.dumps({'trained_steps': 4})})
  config = conftest.make_tiny_config()
  assert evaluate.read_summary(run_dir) is None
  assert not comparison.finished(config, str(run_dir))     # So it is evaluated again.
  with workdir_lib.whole_folder(run_dir / 'eval') as scratch:
    _write(scratch, **{'summary.json': json.dumps({'trained_steps': 4})})
  assert evaluate.read_summary(run_dir) == {'trained_steps': 4}
  assert comparison.finished(config, str(run_dir))
  with pytest.raises(FileNotFoundError, match='no finished evaluation'):
    evaluate.add_swap_function_judgement(config, str(tmp_path / 'unevaluated'))


def test_an_interrupted_analysis_is_redone_not_read(tmp_path, monkeypatch):
  config = conftest.make_tiny_config()
  run_dir = tmp_path / 'diffusion' / 'seed_0'
  run_dir.mkdir(parents=True)
  train.save_config(config, str(run_dir))
  (run_dir / 'analysis').mkdir()
  _write(run_dir / 'analysis', **{'analysis.json': '{"summary": "from an interrupted write"}'})
  assert run_analysis.read_numbers(run_dir) is None
  analysed = []

  class Analysed(Exception):
    pass

  def analyse(config, workdir):
    analysed.append(workdir)
    raise Analysed

  monkeypatch.setattr(run_analysis, 'analyse', analyse)
  with pytest.raises(Analysed):
    run_analysis.analyse_comparison(str(tmp_path))
  assert analysed == [str(run_dir)]


def test_a_whole_folder_on_an_object_store_is_marked_last(tmp_path):
  """On gs:// (epath's mock) there is no folder rename: files are copied, the marker last."""
  root = str(tmp_path / 'gs')
  local = lambda p: str(p).replace('gs://', root + '/', 1)
  order = []

  def copy(fn, path, dst, *args, **kwargs):
    order.append(os.path.basename(str(dst)))
    return fn(local(path), local(dst), *args, **kwargs)

  one = lambda fn, path, *a, **k: fn(local(path), *a, **k)
  mocks = dict(open=one, exists=one, isdir=one, listdir=one, makedirs=one, mkdir=one,
               remove=one, rmtree=one, stat=one, copy=copy,
               glob=lambda fn, pattern: fn(local(pattern)))
  with epath_testing.mock_epath(**mocks):
    out = 'gs://bucket/run/eval'
    with workdir_lib.whole_folder(out) as scratch:
      _write(scratch, **{'summary.json': '{"step": 1}', 'figure.png': 'x'})
    assert workdir_lib.is_complete(out)
    assert order[-1] == workdir_lib.COMPLETE_MARKER
    with pytest.raises(RuntimeError):
      with workdir_lib.whole_folder(out) as scratch:
        raise RuntimeError('interrupted')
    assert workdir_lib.is_complete(out)
    assert sorted(p.name for p in epath.Path('gs://bucket/run').iterdir()) == ['eval']


@pytest.mark.slow
def test_an_evaluation_interrupted_while_writing_keeps_the_previous_one(tiny_config, tmp_path,
                                                                        monkeypatch):
  """The issue's case end to end: evaluated at step 4, trained on to step 6, and killed while
  writing the step-6 results: eval/ still holds the whole step-4 evaluation."""
  tiny_config.eval.bns_svi_steps = 0
  workdir = str(tmp_path / 'run')
  from rnn_behaviour import modes, plots  # pylint: disable=g-import-not-at-top
  modes.run(tiny_config, workdir, 'all')
  before = {name: (tmp_path / 'run' / 'eval' / name).read_bytes()
            for name in os.listdir(tmp_path / 'run' / 'eval')}
  tiny_config.train.num_steps = 6
  tiny_config.train.decay_steps = 4        # The schedule of the first 4 steps, extended.
  train.train(tiny_config, workdir)

  def killed(*args, **kwargs):
    raise KeyboardInterrupt                # What a kill during 'write results' leaves.

  monkeypatch.setattr(plots, 'training_curve', killed)
  with pytest.raises(KeyboardInterrupt):
    evaluate.evaluate(tiny_config, workdir)
  after = {name: (tmp_path / 'run' / 'eval' / name).read_bytes()
           for name in os.listdir(tmp_path / 'run' / 'eval')}
  assert after == before
  assert evaluate.read_summary(workdir)['trained_steps'] == 4
  assert sorted(os.listdir(tmp_path / 'run')).count('eval') == 1
  assert not [n for n in os.listdir(tmp_path / 'run') if n.startswith('.eval')]
