"""User errors at the command line (issue 18, item 7): one line naming what to fix (the field
with its close matches, the file and line), exit code 2, no empty folders left; a bug keeps its
traceback."""

import os
import re
import subprocess
import sys

import pytest

from tests import conftest


DEFAULT_CONFIG = os.path.join(conftest.REPO_ROOT, 'rnn_behaviour', 'configs', 'default.py')


def _main(*args, timeout=120):
  """Runs the entry point; returns (exit code, stderr lines)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-m', 'rnn_behaviour.main', *args],
                          cwd=conftest.REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
  return result.returncode, result.stderr.splitlines()


def _errors(lines):
  """The lines a person reads: those not from absl's INFO/WARNING log."""
  return [l for l in lines if not re.match(r'^[IW]\d{4} ', l)]


def _parse(argv, monkeypatch, capsys):
  """main.parse_flags in this process (config_flags reads its overrides from sys.argv);
  returns (exit code, stderr lines)."""
  from rnn_behaviour import main  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, 'argv', argv)
  try:
    with pytest.raises(SystemExit) as exited:
      main.parse_flags(argv)
  finally:
    main.FLAGS.unparse_flags()
  return exited.value.code, capsys.readouterr().err.splitlines()


def test_flag_errors_are_one_line_in_process(tmp_path, monkeypatch, capsys):
  """The fast twin of the command-line tests below: the same parser, in this process."""
  workdir = f'--workdir={tmp_path / "run"}'
  assert _parse(['main', '--config=/no/such/config.py', workdir], monkeypatch, capsys) == (
      2, ['error: --config=/no/such/config.py: there is no such file (/no/such/config.py); '
          'pass a config file, e.g. --config=rnn_behaviour/configs/default.py'])
  assert _parse(['main', f'--config={DEFAULT_CONFIG}', '--config.train.num_stpes=5', workdir],
                monkeypatch, capsys) == (
      2, ["error: --config.train.num_stpes: config.train has no field 'num_stpes'. "
          'Did you mean --config.train.num_steps?'])
  code, lines = _parse(['main', f'--config={DEFAULT_CONFIG}', '--config.train.num_steps=x',
                        workdir], monkeypatch, capsys)
  assert code == 2 and len(lines) == 1 and '--config.train.num_steps=x' in lines[0]
  code, lines = _parse(['main', f'--config={DEFAULT_CONFIG}'], monkeypatch, capsys)
  assert code == 2 and lines == ['error: flag --workdir=None: Flag --workdir must have a value '
                                 'other than None. (see --helpshort)']
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow   # A new process (JAX's start-up); fast twin: the test above.
def test_a_missing_config_file_is_one_line_and_exit_code_2(tmp_path):
  code, lines = _main('--config=/no/such/config.py', f'--workdir={tmp_path / "run"}')
  assert code == 2
  assert lines == ['error: --config=/no/such/config.py: there is no such file '
                   '(/no/such/config.py); pass a config file, e.g. '
                   '--config=rnn_behaviour/configs/default.py']
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow   # Fast twin: test_flag_errors_are_one_line_in_process.
def test_a_typo_in_a_config_flag_suggests_the_field(tmp_path):
  code, lines = _main(f'--config={DEFAULT_CONFIG}', '--config.train.num_stpes=5',
                      f'--workdir={tmp_path / "run"}')
  assert code == 2
  assert lines == ["error: --config.train.num_stpes: config.train has no field 'num_stpes'. "
                   'Did you mean --config.train.num_steps?']


def test_unknown_fields_name_the_section_and_close_matches():
  from rnn_behaviour import main  # pylint: disable=g-import-not-at-top
  config = conftest.make_tiny_config()
  assert main.unknown_fields(config, ['train.num_steps', 'model.num_units']) == []
  (problem,) = main.unknown_fields(config, ['trian.num_steps'])
  assert "config has no field 'trian'. Did you mean --config.train?" in problem
  (problem,) = main.unknown_fields(config, ['train.num_steps.x'])
  assert 'config.train.num_steps is a value (4), not a section' in problem
  (problem,) = main.unknown_fields(config, ['train.zzzzzz'])
  assert 'Its fields: ' in problem and 'num_steps' in problem


def test_a_config_file_that_fails_names_its_line(tmp_path):
  from rnn_behaviour import errors, main  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'broken.py'
  path.write_text('def get_config():\n  x = 1\n  return x.missing\n')
  with pytest.raises(errors.UserError, match=r'broken.py: the config file fails at line 3: '
                     r"AttributeError: 'int' object has no attribute 'missing'"):
    main.load_config_file(str(path))
  path.write_text('def get_config(:\n')
  with pytest.raises(errors.UserError, match='fails at line 1: SyntaxError'):
    main.load_config_file(str(path))


def _bad_trials(tmp_path):
  trials = tmp_path / 'trials.csv'
  trials.write_text('set_size,cued,response,cue_1,report_1\n1,1,0.1,0.2\n')
  return trials


FIT_CSV = os.path.join(conftest.REPO_ROOT, 'rnn_behaviour', 'configs', 'fit_csv.py')


def test_a_bad_data_file_in_process_is_one_line_and_leaves_no_empty_folders(tmp_path,
                                                                            monkeypatch,
                                                                            capsys):
  """The fast twin of the command-line test below: flags, main() and the real fit, here."""
  from rnn_behaviour import main  # pylint: disable=g-import-not-at-top
  trials = _bad_trials(tmp_path)
  workdir = tmp_path / 'new' / 'fit'
  argv = ['main', '--mode=fit_behaviour', f'--workdir={workdir}', f'--config={FIT_CSV}',
          f'--config.data.path={trials}']
  monkeypatch.setattr(sys, 'argv', argv)
  main.parse_flags(argv)
  try:
    with pytest.raises(SystemExit) as exited:
      main.main(['main'])
  finally:
    main.FLAGS.unparse_flags()
  assert exited.value.code == 2
  (line,) = capsys.readouterr().err.splitlines()
  assert line.startswith(f'error: {trials}: ') and 'line 2' in line
  assert not (tmp_path / 'new').exists()           # Not even the workdir's parent it made.


@pytest.mark.slow   # Fast twin: the test above.
def test_a_bad_data_file_is_one_line_and_leaves_no_empty_folders(tmp_path):
  trials = _bad_trials(tmp_path)
  workdir = tmp_path / 'new' / 'fit'
  code, lines = _main('--mode=fit_behaviour', f'--workdir={workdir}', f'--config={FIT_CSV}',
                      f'--config.data.path={trials}')
  assert code == 2
  (line,) = _errors(lines)
  assert line.startswith(f'error: {trials}: ') and 'line 2' in line
  assert 'Traceback' not in '\n'.join(lines)
  assert not (tmp_path / 'new').exists()           # Not even the workdir's parent it made.


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
  """Anything that is not a user error escapes main() with its traceback (exit code 1)."""
  from rnn_behaviour import main  # pylint: disable=g-import-not-at-top

  def broken(*args, **kwargs):
    raise ZeroDivisionError('a bug')

  monkeypatch.setattr(main.modes, 'run', broken)
  main.FLAGS([sys.argv[0], f'--config={DEFAULT_CONFIG}', f'--workdir={tmp_path / "a" / "b"}'])
  try:
    with pytest.raises(ZeroDivisionError, match='a bug'):
      main.main([sys.argv[0]])
  finally:
    main.FLAGS.unparse_flags()
  assert not (tmp_path / 'a').exists()


def test_a_user_error_raised_in_a_mode_exits_2_without_a_traceback(tmp_path, monkeypatch,
                                                                    capsys):
  from rnn_behaviour import errors, main  # pylint: disable=g-import-not-at-top

  def bad_data(config, workdir, mode, restart=False):
    os.makedirs(os.path.join(workdir, 'behaviour'))
    raise errors.DataError('trials.csv: line 7: column cue_2 is not a number\n(second line)')

  monkeypatch.setattr(main.modes, 'run', bad_data)
  main.FLAGS([sys.argv[0], f'--config={DEFAULT_CONFIG}', f'--workdir={tmp_path / "run"}'])
  try:
    with pytest.raises(SystemExit) as exited:
      main.main([sys.argv[0]])
  finally:
    main.FLAGS.unparse_flags()
  assert exited.value.code == 2
  assert capsys.readouterr().err == ('error: trials.csv: line 7: column cue_2 is not a number '
                                     '(second line)\n')
  assert not (tmp_path / 'run').exists()
