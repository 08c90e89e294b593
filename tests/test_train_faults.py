"""Training faults (issue 12): nothing lost, nothing silent.

Metrics and progress in the loop, divergence without NaN, resuming under another config, two
trainers on one workdir, a torn metrics line, and workdirs that cannot serve a job.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from rnn_behaviour import divergence
from rnn_behaviour import metric_writers
from rnn_behaviour import modes
from rnn_behaviour import train
from rnn_behaviour import workdir as workdir_lib


def _leaves(tree):
  return [np.asarray(p) for p in jax.tree_util.tree_leaves(tree)]


def _steps(workdir):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, train.CHECKPOINT_DIR))
                if s.isdigit())


# 1. Metrics through the metric writer, progress through the reporter.

def test_metrics_reach_tensorboard_and_progress_is_reported(tiny_config, tmp_path, monkeypatch):
  reporters = []

  class Recording(train.progress.ProgressReporter):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **dict(kwargs, display='log'))
      reporters.append(self)

  monkeypatch.setattr(train.progress, 'ProgressReporter', Recording)
  workdir = str(tmp_path / 'run')
  train.train(tiny_config, workdir)
  records = train.read_metrics(workdir)
  events = metric_writers.read_event_scalars(workdir)
  assert [s for s, _ in events['loss']] == [r['step'] for r in records] == [1, 2, 3, 4]
  np.testing.assert_allclose([v for _, v in events['loss']], [r['loss'] for r in records],
                             rtol=1e-6)
  (reporter,) = reporters
  assert reporter.total == 4 and reporter.done == 4
  assert reporter.lines[0].startswith('training: 1/4 steps') and 'compiling' in reporter.lines[0]
  assert 'steps/s after the first' in reporter.lines[-1]


def test_ensemble_metrics_one_scalar_set_per_member(tiny_config, tmp_path):
  tiny_config.train.ensemble_size = 2        # 4 steps: trained_ensemble's compiled program.
  workdir = str(tmp_path / 'ensemble')
  train.train(tiny_config, workdir)
  with open(os.path.join(workdir, train.METRICS_FILE)) as f:
    raw = [json.loads(line) for line in f]
  assert [(r['step'], r['member']) for r in raw] == [(s, m) for s in (1, 2, 3, 4)
                                                     for m in (0, 1)]
  assert all(isinstance(r['member'], int) for r in raw)
  for member in range(2):
    events = metric_writers.read_event_scalars(
        os.path.join(workdir, train.MEMBERS_DIR, f'member_{member}'))
    np.testing.assert_allclose([v for _, v in events['loss']],
                               [r['loss'] for r in train.read_metrics(workdir, member=member)],
                               rtol=1e-6)
  assert events['loss'] != metric_writers.read_event_scalars(
      os.path.join(workdir, train.MEMBERS_DIR, 'member_0'))['loss']


# 2. Divergence without NaN.

def test_watch_loss_tolerates_a_spike_and_catches_a_divergence(tiny_config):
  c = tiny_config.train
  c.divergence_factor, c.divergence_patience, c.divergence_window = 10.0, 3, 10
  watch = train.new_loss_watch(2)
  # Member 0: a two-step spike, then back; member 1: a sustained rise from step 3 on.
  losses = [(1.0, 1.0), (0.9, 0.9), (50.0, 50.0), (60.0, 1e4), (0.8, 1e6), (0.8, 1e8)]
  flags = []
  for loss in losses:
    watch, far, diverged = train.watch_loss(watch, np.array(loss), np.array([True, True]), c)
    flags.append((far.tolist(), diverged.tolist()))
  assert [f[1] for f in flags] == [[False, False]] * 4 + [[False, True]] * 2
  assert flags[2][0] == [True, True] and flags[4][0] == [False, True]
  assert watch.level[1] < 2.0                 # The divergence did not drag its own reference.
  c.divergence_factor = 0.0                   # Disabled.
  watch, far, diverged = train.watch_loss(watch, np.array([1e9, 1e9]), np.array([1, 1], bool), c)
  assert not far.any() and not diverged.any()


def test_divergence_without_nan_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
  c = tiny_config.train
  c.num_steps, c.learning_rate, c.checkpoint_every, c.keep_checkpoints = 30, 1e6, 1, 1
  c.divergence_patience = 3
  workdir = str(tmp_path / 'diverging')
  with pytest.raises(train.TrainingDiverged, match=r'divergence_factor.*step (\d+)'):
    train.train(tiny_config, workdir)
  losses = {r['step']: r['loss'] for r in train.read_metrics(workdir)}
  kept = _steps(workdir)
  assert max(losses.values()) > 1e6, 'the config should make the loss blow up'
  assert kept and all(losses[s] < 10 for s in kept), (kept, losses)
  _, state = train.load_trained(tiny_config, workdir)
  assert int(state.step) == max(kept) and all(np.all(np.isfinite(p)) for p in _leaves(state.params))


def test_rotation_keeps_the_best_checkpoint_besides_the_latest(tiny_config, tmp_path):
  workdir = str(tmp_path / 'rotation')
  tiny_config.train.keep_checkpoints = 1
  manager = train.checkpoint_manager(workdir, tiny_config.train)
  state = {'w': np.zeros(2)}
  for step, level in [(1, 5.0), (2, 1.0), (3, 7.0), (4, 9.0)]:
    manager.save(step, args=train.ocp.args.StandardSave(state), metrics={'loss_level': level})
  manager.wait_until_finished()
  manager.close()
  assert _steps(workdir) == [2, 4]


def test_a_diverging_member_is_rolled_back_and_the_others_go_on(tiny_config, tmp_path,
                                                              monkeypatch, caplog):
  tiny_config.train.ensemble_size = 2
  tiny_config.train.num_steps = 5
  real = divergence.watch_loss
  calls = []

  def member_1_diverges_at_step_3(watch, losses, active, train_config):
    watch, far, diverged = real(watch, losses, active, train_config)
    calls.append(None)
    if len(calls) == 3:
      diverged = np.array([False, True])
    return watch, far, diverged

  monkeypatch.setattr(divergence, 'watch_loss', member_1_diverges_at_step_3)
  workdir = str(tmp_path / 'ensemble')
  state = train.train(tiny_config, workdir)
  assert np.asarray(state.step).tolist() == [5, 2]      # Member 1 back at its step-2 checkpoint.
  assert 'Ensemble member 1 (seed 1) diverged at step 3' in caplog.text
  _, saved = train.load_trained(tiny_config, workdir)
  assert np.asarray(saved.step).tolist() == [5, 2]


# 3. Resuming under another config.

@pytest.mark.parametrize('field,value,named', [
    ('diffusion.num_steps', 7, 'config.diffusion.num_steps: 6 -> 7'),
    ('seed', 3, 'config.seed: 0 -> 3'),
    ('train.learning_rate', 0.5, 'config.train.learning_rate: 0.01 -> 0.5'),
])
def test_resume_refuses_a_change_that_alters_the_computation(tiny_config, tmp_path, field, value,
                                                             named):
  workdir = str(tmp_path / 'run')          # The tiny config as is: trained_run's program.
  train.train(tiny_config, workdir)
  with open(os.path.join(workdir, 'config.json')) as f:
    before = f.read()
  changed = tiny_config.copy_and_resolve_references()
  node, name = (changed, field) if '.' not in field else (changed[field.split('.')[0]],
                                                          field.split('.')[1])
  node[name] = value
  with pytest.raises(ValueError, match=named.replace('.', r'\.')):
    train.train(changed, workdir)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert f.read() == before


def test_resume_allows_eval_cadence_and_an_explicit_extension(tiny_config, tmp_path):
  workdir = str(tmp_path / 'run')
  train.train(tiny_config, workdir)                     # 4 steps.
  tiny_config.eval.num_displays = 16
  tiny_config.train.log_every = 2
  tiny_config.train.checkpoint_every = 3
  train.train(tiny_config, workdir)                     # Nothing computational changed.
  tiny_config.train.num_steps = 6
  with pytest.raises(ValueError, match='--config.train.decay_steps=4'):
    train.train(tiny_config, workdir)                   # Would stretch the cosine schedule.
  tiny_config.train.decay_steps = 4
  extended = train.train(tiny_config, workdir)
  assert int(extended.step) == 6
  # The extension is what one uninterrupted 6-step run with a 4-step schedule computes.
  straight = train.train(tiny_config, str(tmp_path / 'straight'))
  for a, b in zip(_leaves(extended.params), _leaves(straight.params)):
    np.testing.assert_array_equal(a, b)
  with open(os.path.join(workdir, train.HISTORY_FILE)) as f:
    history = [json.loads(line) for line in f]
  assert [h['event'] for h in history] == ['start', 'resume', 'resume']
  assert [h['config']['train']['num_steps'] for h in history] == [4, 4, 6]
  assert history[1]['config']['eval']['num_displays'] == 16


def test_restart_moves_the_old_run_aside(tiny_config, tmp_path):
  workdir = str(tmp_path / 'run')
  train.train(tiny_config, workdir)            # 4 steps, checkpoints 2 and 4.
  tiny_config.train.learning_rate = 0.5
  state = train.train(tiny_config, workdir, restart=True)
  assert int(state.step) == 4
  (old,) = os.listdir(os.path.join(workdir, train.SUPERSEDED_DIR))
  old = os.path.join(workdir, train.SUPERSEDED_DIR, old)
  assert _steps(old) == [2, 4] and len(train.read_metrics(old)) == 4
  with open(os.path.join(old, 'config.json')) as f:
    assert json.load(f)['train']['learning_rate'] == 0.01
  assert [r['step'] for r in train.read_metrics(workdir)] == [1, 2, 3, 4]
  with open(os.path.join(workdir, train.HISTORY_FILE)) as f:
    assert [json.loads(line)['event'] for line in f] == ['start', 'restart']


# 4. One trainer per workdir.

def test_a_second_live_trainer_fails_clearly(tiny_config, tmp_path):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
  try:
    with open(os.path.join(workdir, workdir_lib.LOCK_FILE), 'w') as f:
      json.dump({'pid': other.pid, 'host': workdir_lib.socket.gethostname(), 'time': 0}, f)
    with pytest.raises(workdir_lib.WorkdirLocked, match=f'pid {other.pid} on host'):
      train.train(tiny_config, workdir)
    assert not os.path.exists(os.path.join(workdir, train.METRICS_FILE))
  finally:
    other.kill()
    other.wait()


def test_a_stale_lock_is_reclaimed_with_a_message(tiny_config, tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  lock_path = os.path.join(workdir, workdir_lib.LOCK_FILE)
  with open(lock_path, 'w') as f:
    json.dump({'pid': dead.pid, 'host': workdir_lib.socket.gethostname(), 'time': 0}, f)
  train.train(tiny_config, workdir)
  assert f'stale training lock {lock_path} of pid {dead.pid}' in caplog.text
  assert not os.path.exists(lock_path)                  # Released after training.


def test_the_lock_is_exclusive_and_released(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lib.lock(workdir) as lock_path:
    with open(lock_path) as f:
      assert json.load(f)['pid'] == os.getpid()
    with pytest.raises(workdir_lib.WorkdirLocked, match='is being trained by'):
      workdir_lib.acquire(workdir)
  assert not os.path.exists(lock_path)


# 5. A torn metrics line.

def test_a_torn_metrics_line_is_dropped_on_resume(tiny_config, tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  train.train(tiny_config, workdir)                     # 4 steps: trained_run's program.
  with open(os.path.join(workdir, train.METRICS_FILE), 'a') as f:
    f.write('{"step": 5, "loss": 0.1')                  # Killed mid-write.
  assert [r['step'] for r in train.read_metrics(workdir)] == [1, 2, 3, 4]
  assert 'the last line is not a JSON record' in caplog.text
  tiny_config.train.num_steps = 6
  tiny_config.train.decay_steps = 4
  train.train(tiny_config, workdir)
  assert [r['step'] for r in train.read_metrics(workdir)] == [1, 2, 3, 4, 5, 6]


# 6. Fail before the work.

def test_a_workdir_that_is_a_file_fails_first(tiny_config, tmp_path):
  path = tmp_path / 'file'
  path.write_text('not a directory')
  for mode in ('train', 'evaluate'):
    with pytest.raises(workdir_lib.WorkdirError, match='is a file, not a directory'):
      modes.run(tiny_config, str(path), mode)


@pytest.mark.parametrize('mode', ['evaluate', 'analyse'])
def test_evaluating_an_untrained_workdir_fails_and_creates_nothing(tiny_config, tmp_path, mode):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(workdir_lib.WorkdirError, match='holds no checkpoint'):
    modes.run(tiny_config, str(empty), mode)
  with pytest.raises(workdir_lib.WorkdirError, match='does not exist'):
    modes.run(tiny_config, str(tmp_path / 'missing'), mode)
  assert os.listdir(empty) == [] and not (tmp_path / 'missing').exists()
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    train.load_trained(tiny_config, str(empty))
  assert os.listdir(empty) == []


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='needs /proc, unwritable even to root')
def test_an_unwritable_workdir_fails_first(tiny_config):
  with pytest.raises(workdir_lib.WorkdirError, match='is not writable'):
    modes.run(tiny_config, '/proc/self', 'evaluate')
  with pytest.raises(workdir_lib.WorkdirError, match='cannot be created: /proc is not writable'):
    modes.run(tiny_config, '/proc/no_such_run', 'train')


# 7. Corrupt checkpoints (issue 18, item 4): named, never used silently, the intact one used.

def _saved_checkpoints(config, workdir, steps):
  """Checkpoints at `steps` of an untrained state (no training step is compiled); each state's
  step counter is its step, so that the one restored can be told."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  built = train.build(config, behaviour_model=False)
  state = train.init_states(built, train.member_seeds(config))
  manager = train.checkpoint_manager(workdir, config.train)
  for step in steps:
    manager.save(step, args=ocp.args.StandardSave(
        dataclasses.replace(state, step=np.asarray(step, np.int32))))
  manager.wait_until_finished()
  manager.close()
  train.save_config(config, workdir)


def _damage(workdir, step):
  """Overwrites the array data of one checkpoint (as a disk error or a torn copy would)."""
  folder = os.path.join(workdir, train.CHECKPOINT_DIR, str(step))
  damaged = 0
  for root, _, files in os.walk(folder):
    if os.path.basename(root) == 'd':
      for name in files:
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'not a chunk')
        damaged += 1
  assert damaged


def test_a_corrupt_checkpoint_is_named_and_the_intact_one_used(tiny_config, tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  _saved_checkpoints(tiny_config, workdir, (2, 4))
  _damage(workdir, 4)
  with caplog.at_level('WARNING'):
    _, state = train.load_trained(tiny_config, workdir)
  assert int(state.step) == 2
  broken = os.path.join(workdir, train.CHECKPOINT_DIR, '4')
  assert f'The checkpoint at step 4 ({broken}) cannot be read' in caplog.text
  assert (f'Using the checkpoint at step 2, the newest that can be read, instead of the broken '
          f'one(s) at step 4. Remove them with: rm -r {broken}') in caplog.text
  assert os.path.isdir(broken)                        # Evaluation reads; it removes nothing.


def test_no_readable_checkpoint_is_one_clear_user_error(tiny_config, tmp_path):
  from rnn_behaviour import errors  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  _saved_checkpoints(tiny_config, workdir, (2,))
  _damage(workdir, 2)
  with pytest.raises(errors.UserError, match=r'no checkpoint in .* can be read \(steps 2;.*'
                     r'rm -r .*checkpoints/2\) to train afresh, or .* --restart'):
    train.load_trained(tiny_config, workdir)


def test_another_network_is_a_mismatch_not_a_corruption(tiny_config, tmp_path):
  from rnn_behaviour import errors  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  _saved_checkpoints(tiny_config, workdir, (2,))
  tiny_config.model.num_units = 16
  with pytest.raises(train.CheckpointMismatch, match='does not fit this config.s network') as e:
    modes.run(tiny_config, workdir, 'evaluate')
  assert isinstance(e.value, errors.UserError) and isinstance(e.value, ValueError)
  assert len(str(e.value).splitlines()) == 1


def test_training_resumes_from_the_intact_checkpoint_and_sets_the_broken_one_aside(
    tiny_config, tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  train.train(tiny_config, workdir)                  # Checkpoints 2 and 4.
  _damage(workdir, 4)
  tiny_config.train.num_steps = 4
  with caplog.at_level('WARNING'):
    state = train.train(tiny_config, workdir)        # Resumes at 2, trains 3-4 again.
  assert int(state.step) == 4
  (aside,) = os.listdir(os.path.join(workdir, train.BROKEN_CHECKPOINTS_DIR))
  assert aside.startswith('4.')
  assert 'Resuming from the checkpoint at step 2, the newest that can be read' in caplog.text
  assert 'rm -r' in caplog.text
  _, restored = train.load_trained(tiny_config, workdir)   # Step 4 is whole again.
  assert int(restored.step) == 4
  assert [r['step'] for r in train.read_metrics(workdir)] == [1, 2, 3, 4]


# 8. Resuming below the checkpoint's step (issue 18, item 8).

def test_a_run_already_past_num_steps_says_so(tiny_config, tmp_path, capsys, caplog):
  workdir = str(tmp_path / 'run')
  tiny_config.train.decay_steps = 4                  # The schedule does not change below.
  train.train(tiny_config, workdir)
  tiny_config.train.num_steps = 2
  with caplog.at_level('INFO'):
    state = train.train(tiny_config, workdir)
  assert int(state.step) == 4
  shown = caplog.text + capsys.readouterr().err
  assert 'is already at step 4, past config.train.num_steps=2' in shown
  assert 'training: 4/2' not in shown
  assert _steps(workdir) == [2, 4]
