"""The report (`--mode=report`, rnn_behaviour/lab_report/): its judgements, its loop and its page.

Fast tests build the page from a fixture workdir written here (the files the stages write, at
tiny sizes, no training); the slow ones run the whole loop at tiny sizes through the command
line, and open the page in headless Chromium.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from rnn_behaviour import curriculum as curriculum_lib
from rnn_behaviour import modes
from rnn_behaviour.configs import report as report_config
from rnn_behaviour.lab_report import judge
from rnn_behaviour.lab_report import page
from rnn_behaviour.lab_report import stage_plan
from rnn_behaviour.lab_report import stages
from tests import conftest
from tests import tiny

BAYS = os.path.join(conftest.SHARED_DATA, 'bays2009', 'bays_data.mat')
# The tiny run's sizes (as tests/conftest.make_tiny_config), flat for the command line.
TINY = {
    'task.epochs.stimulus': 2, 'task.epochs.delay': 3, 'task.epochs.cue': 2,
    'task.epochs.post_cue': 1, 'task.num_tuning': 8, 'model.num_units': 8,
    'diffusion.num_steps': 6, 'train.num_steps': 4, 'train.displays_per_batch': 4,
    'train.samples_per_display': 4, 'train.warmup_steps': 1, 'train.log_every': 1,
    'train.checkpoint_every': 2, 'eval.num_displays': 8, 'eval.samples_per_display': 16,
    'eval.num_plot_displays': 2, 'analysis.samples_per_display': 4,
    'analysis.num_bootstrap': 4, 'analysis.num_shuffles': 2, 'analysis.pair_rotations': 1,
    'analysis.report_values': 6, 'analysis.swap_displays': 16,
}
CHROMIUM = '/usr/bin/chromium'
MEMBERS = 3


# ------------------------------------------------------------------------------- judgements


def test_split_holds_out_a_share_of_every_cell_and_is_reproducible():
  cells = np.repeat(np.arange(4), [10, 21, 1, 2])
  heldout = judge.split_trials(cells, 0.2, seed=3)
  counts = [int(heldout[cells == c].sum()) for c in range(4)]
  assert counts == [2, 4, 0, 0]          # round(0.2 n), but every cell keeps a fitting trial.
  np.testing.assert_array_equal(heldout, judge.split_trials(cells, 0.2, seed=3))
  assert not np.array_equal(heldout, judge.split_trials(cells, 0.2, seed=4))
  with pytest.raises(ValueError, match='heldout_fraction'):
    judge.split_trials(cells, 1.0, seed=0)


def test_learned_cue_selection_is_within_the_tolerance_of_the_target():
  assert judge.learned_cue_selection(0.08, 0.04, 0.05)
  assert not judge.learned_cue_selection(0.10, 0.04, 0.05)
  assert not judge.learned_cue_selection(float('nan'), 0.04, 0.05)


def _member(learned, slope_upper=-0.1, decided='delay+3', sigmoid=0.001):
  return dict(learned=learned, analysed=True, sigmoid_mse=sigmoid, flat_mse=0.01,
              alignment_precue=0.3, alignment_postcue=0.8,
              prediction=dict(slope=-0.2, slope_interval=[-0.4, slope_upper]),
              swap_decided_from=decided)


def test_mechanism_conclusion_gates_on_cue_selection():
  some = judge.mechanism_conclusion(2, [_member(True), _member(False), _member(False)], 0.05)
  assert some['gate'].startswith('2 of 3 networks did not learn cue selection: not interpreted')
  assert some['interpreted'] == [0] and not some['trustworthy']
  none = judge.mechanism_conclusion(2, [_member(False)] * 3, 0.05)
  assert none['gate'].startswith('3 of 3 networks did not learn cue selection: not interpreted')
  assert none['sentences'] == []
  agree = judge.mechanism_conclusion(2, [_member(True)] * 3, 0.05)
  assert agree['trustworthy'] and 'holds in 3 of 3' in agree['sentences'][1]
  split = judge.mechanism_conclusion(2, [_member(True), _member(True, slope_upper=0.1)], 0.05)
  assert not split['trustworthy'] and 'holds in 1 of 2' in split['sentences'][1]
  four = judge.mechanism_conclusion(4, [dict(analysed=False)], 0.05)
  assert 'two-item displays' in four['gate'] and not four['trustworthy']


def test_judge_samples_scores_each_model_on_the_real_responses():
  from rnn_behaviour import task as task_lib  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  displays = task_lib.Displays(cue=jnp.array([[0.0, 1.0], [0.0, 2.0]]),
                               report=jnp.array([[0.0, 2.0], [1.0, -1.0]]),
                               cued=jnp.array([0, 0]))
  observed = np.array([0.05, -1.0])                  # The second trial is a swap.
  exact = np.array([[0.0] * 4, [1.0] * 4])           # Always the target.
  swapper = np.array([[2.0] * 4, [-1.0] * 4])        # Always the non-target.
  result = judge.judge_samples(dict(exact=exact, swapper=swapper), displays, observed,
                               np.array([0.5, 1.5, np.pi]), 20.0)
  assert result['data']['swap_rate'] == 0.5
  assert result['exact']['swap_rate'] == 0.0 and result['swapper']['swap_rate'] == 1.0
  assert result['data']['swap_rate_by_distance'] == [0.0, 1.0]
  assert result['data']['pairs'] == [1, 1]
  assert np.isfinite(result['exact']['heldout_loglik'])


# ------------------------------------------------------------------------------- config


def test_report_config_and_its_paper_variant():
  laptop, paper = report_config.get_config(), report_config.get_config('paper')
  assert laptop.report.mode == 'report' and laptop.train.ensemble_size == 3
  assert laptop.report.baseline == 'moment_matching' and tuple(laptop.report.set_sizes) == (2,)
  assert tuple(paper.report.set_sizes) == (2, 4)
  assert paper.model.cell == 'dendritic' and paper.train.num_steps > laptop.train.num_steps
  with pytest.raises(ValueError, match='unknown variant'):
    report_config.get_config('huge')


def test_bad_report_fields_fail_naming_the_field():
  config = report_config.get_config()
  config.report.heldout_fraction = 0.0
  with pytest.raises(ValueError, match='config.report.heldout_fraction'):
    stages.validate(config)
  config = report_config.get_config()
  config.report.baseline = 'nonsense'
  with pytest.raises(ValueError, match='config.report.baseline'):
    stages.validate(config)
  config = report_config.get_config()
  config.report.set_sizes = (2, 3)
  with pytest.raises(ValueError, match=r'config.report.set_sizes.*\[3\].*not in the data'):
    stages.chosen_set_sizes(config, [1, 2, 4, 6])
  config.report.set_sizes = (1,)
  with pytest.raises(ValueError, match='no non-target'):
    stages.chosen_set_sizes(config, [1, 2])
  config.report.set_sizes = ()
  assert stages.chosen_set_sizes(config, [1, 2, 4]) == [2, 4]


def test_run_configs_read_the_fit_and_judge_on_the_heldout_trials(tmp_path):
  config = report_config.get_config()
  c = stages.run_config(config, str(tmp_path), 4)
  assert 'report' not in c and c.task.num_items == 4 and c.train.ensemble_size == 3
  assert c.data.path.endswith('heldout_trials.csv') and c.data.format == 'csv'
  assert c.behaviour.fit == str(tmp_path / 'behaviour')
  config.report.baseline_steps = 7
  b = stages.run_config(config, str(tmp_path), 2, 'moment_matching')
  assert b.objective.name == 'moment_matching' and b.train.ensemble_size == 1
  assert b.train.num_steps == 7
  assert stages.fit_config(config, str(tmp_path)).data.path.endswith('fit_trials.csv')
  # The ensemble's last stage starts from the short-shape diffusion stage, the baseline from
  # the task-optimal stage's member 0.
  assert c.train.init_from == str(tmp_path / 'set_size_4' / stages.SHORT)
  assert b.train.init_from == str(tmp_path / 'set_size_2' / stages.SELECT)
  assert b.train.init_member == 0
  config.report.selection.select_steps = 0
  assert not stages.run_config(config, str(tmp_path), 2).train.init_from
  assert not stages.run_config(config, str(tmp_path), 2, 'moment_matching').train.init_from


def test_the_ensemble_learns_selection_through_the_short_shape(tmp_path):
  config = report_config.get_config()
  config.report.selection.update(select_steps=11, short_steps=13, check_every=5, min_steps=3)
  chain = stages.selection_curriculum(config, str(tmp_path), 2)
  assert stages.stage_names(config) == [stages.SELECT, stages.SHORT, stages.DIFFUSION]
  folder = stages.set_size_dir(str(tmp_path), 2)
  select, short, last = (curriculum_lib.stage_config(chain, name, folder)
                         for name in stages.stage_names(config))
  assert select.objective.name == 'task_optimal' and not select.train.init_from
  assert short.objective.name == 'diffusion' and short.train.init_from.endswith(stages.SELECT)
  for c in (select, short):       # The authors' short shape, on no swaps.
    assert c.task.epochs.delay == 1 and c.diffusion.num_steps == 5
    assert c.behaviour.source == 'parametric' and c.behaviour.swap_kind == 'none'
    assert c.task.epochs.stimulus == last.task.epochs.stimulus
  assert (select.train.num_steps, short.train.num_steps) == (11, 13)
  assert select.train.displays_per_batch == short.train.displays_per_batch == 64
  assert last.train.displays_per_batch == config.train.displays_per_batch == 64
  # The last stage is the report's own run: the BNS target in the full shape, its budget.
  assert last.behaviour.source == 'bns' and last.task.epochs.delay == 15
  assert last.train.num_steps == config.train.num_steps
  assert last.train.init_from.endswith(stages.SHORT)
  assert last.model.trial_noise == -1.0          # The paper's preparatory noise.
  assert last.to_dict() == stages.run_config(config, str(tmp_path), 2).to_dict()
  # Each stage ends when learned; the short-shape diffusion is trained whole; an unlearned
  # stage does not stop the report.
  settings = {name: curriculum_lib.stage_criterion(chain, name) for name in stages.stage_names(
      config)}
  assert settings[stages.SHORT].min_steps == 13 and settings[stages.SELECT].min_steps == 11
  assert settings[stages.DIFFUSION].min_steps == 3
  assert all(s.check_every == 5 and s.tolerance == config.report.swap_tolerance
             for s in settings.values())
  assert chain.continue_unlearned
  # Budgets are for two items: four get twice as many steps.
  four = stages.selection_curriculum(config, str(tmp_path), 4)
  assert [s['overrides']['train']['num_steps'] for s in four.stages[:2]] == [22, 26]
  config.report.selection.scale_by_set_size = False
  four = stages.selection_curriculum(config, str(tmp_path), 4)
  assert [s['overrides']['train']['num_steps'] for s in four.stages[:2]] == [11, 13]
  config.report.selection.select_steps = 0
  assert stages.stage_names(config) == [stages.DIFFUSION]
  assert len(stages.selection_curriculum(config, str(tmp_path), 2).stages) == 1
  with pytest.raises(ValueError, match='config.report.selection.members'):
    config.report.selection.members = 0.0
    stages.validate(config)


def test_report_config_runs_the_report_under_the_default_mode(monkeypatch, tmp_path):
  calls = []
  from rnn_behaviour import lab_report  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(lab_report, 'run', lambda config, workdir: calls.append(workdir))
  modes.run(report_config.get_config(), str(tmp_path / 'w'), 'all')
  assert calls == [str(tmp_path / 'w')]


# ------------------------------------------------------------------------------- the plan


def test_plan_runs_unfinished_stages_once_and_records_their_time(tmp_path, capsys):
  done = set()
  ran = []

  def stage(name):
    return stage_plan.Stage(name, lambda: (ran.append(name), done.add(name)),
                        lambda: name in done, 1.0)

  clock = iter(float(i) for i in range(1000))
  plan = stage_plan.Plan(str(tmp_path), [stage('a'), stage('b')], clock=lambda: next(clock))
  timings = plan.run()
  assert ran == ['a', 'b'] and not timings['a']['skipped']
  assert timings['a']['seconds'] > 0
  again = stage_plan.Plan(str(tmp_path), [stage('a'), stage('b')]).run()
  assert ran == ['a', 'b'] and again['b']['skipped']
  assert again['b']['seconds'] == timings['b']['seconds']   # Read back from the timings file.
  text = capsys.readouterr().err
  assert 'ETA' in text and 'finished earlier, skipped' in text


# ------------------------------------------------------------------------------- the page


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def _csv(rows):
  header = list(rows[0])
  return '\n'.join([','.join(header)] + [','.join(str(r[k]) for k in header) for r in rows]) + '\n'


def make_fixture_workdir(workdir: str, learned=(True, True, False)) -> None:
  """The files the stages write, for set sizes 2 and 4, at tiny sizes (no training)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  _write(f'{workdir}/data/split.json', json.dumps(dict(
      path='/data/bays_data.mat', format='bays2009', trials=100, subjects=['1', '2'],
      conditions=[''], set_sizes=[1, 2, 4], chosen_set_sizes=[2, 4], by_set_size=[
          dict(set_size=n, trials=30, subjects=2, fit_trials=24, heldout_trials=6,
               chosen=n > 1) for n in (1, 2, 4)])))
  _write(f'{workdir}/behaviour/summary.json', json.dumps(dict(complete=True, warnings=[
      'posterior-predictive check: the data fall outside the band at pi/2'])))
  _write(f'{workdir}/behaviour/mixture_fits.csv', _csv([
      dict(subject=s, set_size=n, condition='', model='three_component', kappa=8.0, sd=0.4,
           p_t=0.9, p_n=0.05, p_u=0.05) for s in (1, 2) for n in (2, 4)]))
  _write(f'{workdir}/behaviour/swap_function.csv', _csv([
      dict(set_size=n, dimension='cue', distance=d, logit_mean=-3.0, logit_lower=-3.5,
           logit_upper=-2.5) for n in (2, 4) for d in np.linspace(0, np.pi, 7)]))
  _write(f'{workdir}/behaviour/ppc_nontarget_proximity.csv', _csv([
      dict(set_size=2, cue_distance=0.785, n=24, data_rate=0.03, model_lower=0.01,
           model_mean=0.02, model_upper=0.04, ppp=0.4, warning='')]))
  fig, ax = plt.subplots(figsize=(2, 1.5))
  ax.plot([0, 1], [0, 1])
  fig.savefig(f'{workdir}/behaviour/swap_probability.png')
  plt.close(fig)
  centres = [1.0, 1.6, 2.2, 2.8]
  for n in (2, 4):
    folder = f'{workdir}/set_size_{n}'
    labels = [f'member_{i}' for i in range(MEMBERS)] + ['moment_matching', 'bns']
    rates = {m: 0.05 if (m == 'bns' or not m.startswith('member')
                         or learned[int(m[-1])]) else 0.4 for m in labels}
    held = {m: dict(swap_rate=rates[m], swap_rate_by_distance=[rates[m]] * 4,
                    heldout_loglik=-0.8 - 0.01 * i, circular_sd=0.5)
            for i, m in enumerate(labels)}
    held['data'] = dict(swap_rate=0.05, swap_rate_by_distance=[0.1, 0.0, 0.05, 0.0],
                        pairs=[3, 3, 3, 3], num_trials=6, circular_sd=0.5)
    held.update(trained_steps=dict(diffusion=4, moment_matching=4),
                seeds={m: i for i, m in enumerate(labels[:-1])}, samples_per_trial=8,
                centres=centres, edges=[0.7, 1.3, 1.9, 2.5, np.pi], kde_concentration=20.0,
                examples=[0, 3])
    _write(f'{folder}/heldout.json', json.dumps(held))
    report = rng.uniform(-np.pi, np.pi, (6, n))
    np.savez(f'{folder}/heldout_samples.npz', cue=rng.uniform(-np.pi, np.pi, (6, n)),
             report=report, cued=np.zeros(6, int), observed=report[:, 0],
             weights=np.full((6, n + 1), 1.0 / (n + 1)),
             **{f'samples_{m}': rng.uniform(-np.pi, np.pi, (6, 8)) for m in labels})
    _write(f'{folder}/diffusion/metrics.jsonl', ''.join(
        json.dumps(dict(step=s, member=i, loss=1.0 / s)) + '\n'
        for s in (1, 2, 3, 4) for i in range(MEMBERS)))
    _write(f'{folder}/moment_matching/metrics.jsonl', ''.join(
        json.dumps(dict(step=s, loss=2.0 / s)) + '\n' for s in (1, 2, 3, 4)))
    for stage, met in ((stages.SELECT, True), (stages.SHORT, True), (stages.DIFFUSION, False)):
      _write(f'{folder}/{stage}/criterion.json', json.dumps(dict(
          ended=True, met=met, met_step=250 if met else None, last_step=500, budget=500,
          members=[dict(member=i, learned=met and i < 2, swap_rate=0.01 * (i + 1),
                        target_swap_rate=0.03) for i in range(MEMBERS)])))
    if n != 2:
      continue
    for i in range(MEMBERS):
      member = f'{folder}/diffusion/analysis_paper/member_{i}'
      steps = 20
      _write(f'{member}/complete.json', json.dumps(dict(complete=True)))   # Written whole.
      _write(f'{member}/summary.json', json.dumps(dict(
          trained_steps=4, seed=i, swap_rate=rates[f'member_{i}'], sigmoid_mse=0.001,
          flat_mse=0.02, alignment_precue=0.3, alignment_postcue=0.9,
          precue_distance_slope=-0.1, response_swap_auc=0.8, swap_decided_from='delay+2',
          prediction=dict(slope=-0.1, slope_interval=[-0.2, -0.05], distances=[0.8, 1.6, 2.4],
                          means=[0.5, 0.4, 0.3]))))
      _write(f'{member}/alignment.csv', _csv([
          dict(step=t, epoch='delay', step_in_epoch=t, mean=t / steps, lower=0, upper=1,
               num_pairs=4) for t in range(steps)]))
      _write(f'{member}/swap_decision.csv', _csv([
          dict(step=t, epoch='delay', step_in_epoch=t, auc=0.5 + t / 50, chance_lower=0.45,
               chance_upper=0.55, projection_correct=0, projection_swap=0)
          for t in range(steps)]))


def _fixture_config():
  config = report_config.get_config()
  config.update_from_flattened_dict(TINY)
  config.data.path = '/data/bays_data.mat'
  return config


def build_fixture_report(workdir: str, **kwargs) -> str:
  make_fixture_workdir(workdir, **kwargs)
  timings = {'split the trials': dict(seconds=1.5, skipped=False),
             'fit the behavioural models': dict(seconds=None, skipped=True)}
  return page.write_report(_fixture_config(), workdir, timings, time.time())


def test_page_is_one_self_contained_file_with_every_section(tmp_path):
  path = build_fixture_report(str(tmp_path))
  text = open(path).read()
  for section in page.SECTIONS:
    assert f'<section id="{section}">' in text
  images = re.findall(r'<img [^>]*src="([^"]+)"', text)
  # Data: 1 behaviour figure; networks: 2 x (curves, examples) + swap band + log-likelihood;
  # mechanism: set size 2 only.
  assert len(images) == 1 + 4 + 2 + 1
  assert all(src.startswith('data:image/png;base64,') for src in images)
  assert not re.search(r'(src|href)="(https?:)?//', text)          # Nothing from the network.
  assert '1 of 3 networks did not learn cue selection: not interpreted' in text
  assert 'two-item displays' in text                               # Set size 4.
  assert 'outside the band' in text                                # The fit's warning.
  for name in ('networks', 'mechanism', 'swap_by_distance', 'timings', 'data'):
    assert os.path.exists(tmp_path / 'report' / f'{name}.csv'), name
    assert f'href="{name}.csv"' in text
  rows = open(tmp_path / 'report' / 'networks.csv').read().splitlines()
  assert len(rows) == 1 + 2 * (MEMBERS + 1)
  # The training path: one row a curriculum stage and set size, from criterion.json.
  assert 'Training path' in text
  path = list(csv.DictReader(open(tmp_path / 'report' / 'training_path.csv')))
  assert [(r['set_size'], r['stage']) for r in path] == [
      (str(n), name) for n in (2, 4) for name in (stages.SELECT, stages.SHORT, stages.DIFFUSION)]
  assert path[0]['ended_at_step'] == '250' and path[2]['ended_at_step'] == '500'
  assert path[0]['swap_rates'] == '0.010 / 0.020 / 0.030' and path[0]['learned'] == '2 of 3'


def test_page_says_when_no_network_learned(tmp_path):
  path = build_fixture_report(str(tmp_path), learned=(False, False, False))
  assert '3 of 3 networks did not learn cue selection: not interpreted' in open(path).read()


# ------------------------------------------------------------------------------- slow


def _console_errors(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines()
          if 'CONSOLE' in line and ('error' in line.lower() or 'Uncaught' in line)]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f'no {CHROMIUM} (apt-get install '
                    'chromium)')
def test_page_in_headless_chromium(tmp_path):
  path = build_fixture_report(str(tmp_path / 'run'))
  shot = tmp_path / 'report.png'
  base = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
          '--no-first-run', '--disable-background-networking', '--disable-component-update',
          '--disable-sync', f'--user-data-dir={tmp_path / "profile"}', '--window-size=1366,768']
  url = 'file://' + os.path.abspath(path)
  dom = subprocess.run(base + ['--enable-logging=stderr', '--v=0', '--dump-dom', url],
                       capture_output=True, text=True, timeout=120)
  assert dom.returncode == 0, dom.stderr[-2000:]
  assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
  for section in page.SECTIONS:
    assert f'id="{section}"' in dom.stdout
  assert dom.stdout.count('data:image/png;base64,') == 8
  # Every image decoded and laid out no wider than a laptop's window (no horizontal scroll).
  probe = tmp_path / 'probe.html'
  probe.write_text(open(path).read().replace('</body>', """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.every(i => i.complete && i.naturalWidth > 0);
  const wide = document.documentElement.scrollWidth;
  document.title = 'PROBE imgs=' + imgs.length + ' decoded=' + ok + ' scrollWidth=' + wide;
});</script></body>"""))
  probed = subprocess.run(base + ['--virtual-time-budget=5000', '--dump-dom',
                                  'file://' + str(probe)],
                          capture_output=True, text=True, timeout=120)
  title = re.search(r'<title>(PROBE[^<]*)</title>', probed.stdout)
  assert title, probed.stdout[:500]
  fields = dict(kv.split('=') for kv in title.group(1).split()[1:])
  assert fields['imgs'] == '8' and fields['decoded'] == 'true'
  assert int(fields['scrollWidth']) <= 1366
  shoot = subprocess.run(base + [f'--screenshot={shot}', url], capture_output=True, text=True,
                         timeout=120)
  assert shoot.returncode == 0 and shot.stat().st_size > 10_000, shoot.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(BAYS), reason=f'no {BAYS}')
def test_report_command_end_to_end_and_resumes(tmp_path):
  workdir = tmp_path / 'run'
  overrides = dict(TINY, **{
      'data.path': BAYS, 'data.subjects': '1,2', 'fit.svi_steps': 20,
      'fit.num_posterior_samples': 20, 'fit.ppc_draws': 5, 'fit.num_fourier': 2,
      'fit.guide': 'normal', 'train.ensemble_size': 2, 'eval.bns_svi_steps': 0,
      'report.samples_per_trial': 8, 'report.example_displays': 2, 'report.baseline_steps': 4,
      'report.set_sizes': '2,4',
      'report.selection.select_steps': 2, 'report.selection.short_steps': 2,
      'report.selection.check_every': 2, 'report.selection.min_steps': 1,
      'report.selection.num_displays': 4, 'report.selection.samples_per_display': 4})
  command = [sys.executable, '-m', 'rnn_behaviour.main',
             '--config=rnn_behaviour/configs/report.py', f'--workdir={workdir}',
             '--cpu_devices=1'] + [f'--config.{k}={v}' for k, v in overrides.items()]
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             **tiny.compilation_cache_env(str(tmp_path / 'jax_cache')))
  first = subprocess.run(command, cwd=conftest.REPO_ROOT, capture_output=True, text=True,
                         env=env, timeout=1800)
  assert first.returncode == 0, first.stderr[-3000:]
  index = workdir / 'report' / 'index.html'
  text = index.read_text()
  for section in page.SECTIONS:
    assert f'<section id="{section}">' in text
  assert 'did not learn cue selection' in text or 'learned cue selection' in text
  assert 'ETA' in first.stderr
  for n in (2, 4):
    assert (workdir / f'set_size_{n}' / 'heldout.json').exists()
  second = subprocess.run(command, cwd=conftest.REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  assert second.stderr.count('finished earlier, skipped') == len(stages.plan(
      _tiny_report_config(overrides), str(workdir)))
  shutil.rmtree(workdir / 'report')


def _tiny_report_config(overrides):
  config = report_config.get_config()
  # As the command line reads them: a comma-separated selection is a tuple.
  def parsed(key, value):
    if key == 'data.subjects':
      return tuple(value.split(','))
    return tuple(int(n) for n in value.split(',')) if key == 'report.set_sizes' else value
  config.update_from_flattened_dict({k: parsed(k, v) for k, v in overrides.items()})
  return config
