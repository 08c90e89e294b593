"""The report's loop, stage by stage, each through the library's own seam.

  1. split      DIR/data/{fit,heldout}_trials.csv: `report.heldout_fraction` of every
                subject x set size x condition cell held out (judge.split_trials), split.json.
  2. fit        pipeline.fit_behaviour on the fitting trials -> DIR/behaviour/.
  per set size N in the chosen ones (DIR/set_size_N/):
  3. train      the diffusion ensemble (config.train.ensemble_size seeds in one program) as
                a curriculum that keeps cue selection under the paper's noise
                (`selection_curriculum`): select_short/ (task-optimal, short shape) ->
                diffusion_short/ (no swaps, short shape) -> diffusion/ (the BNS posterior
                predictive, full shape), each stage ending when learned (criterion.json);
                then the baseline -> <baseline>/, started from select_short's member 0.
  4. evaluate   evaluate.evaluate of every member and the baseline against the BNS posterior
                predictive; its held-out log-likelihood is on the held-out real trials.
  5. judge      every member, the baseline and the BNS sampled on the held-out real trials'
                displays (judge.judge_samples) -> heldout.json, heldout_samples.npz.
  6. mechanism  run_paper.analyse on every member (two-item displays only) ->
                diffusion/analysis_paper/member_<i>/.
  7. page       DIR/report/index.html and its CSV tables (page.write_report).

A stage whose outputs exist for the current config is skipped (`done`), so a second call
resumes where the first stopped; training itself resumes from its last checkpoint. Each stage
announces itself with the elapsed time and an ETA for the rest (`stage_plan.Plan`), and its wall time goes
to DIR/report_timings.jsonl. All paths go through etils.epath.
"""

from __future__ import annotations

import json
import os

from etils import epath
import jax
import ml_collections
import numpy as np

from rnn_behaviour import config_validation
from rnn_behaviour import criteria
from rnn_behaviour import curriculum as curriculum_lib
from rnn_behaviour import evaluate
from rnn_behaviour import files
from rnn_behaviour import objectives
from rnn_behaviour import progress
from rnn_behaviour import train
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.analysis import run_paper
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import fit_config as fit_config_lib
from rnn_behaviour.behaviour import pipeline
from rnn_behaviour.behaviour import source
from rnn_behaviour.configs import paper_targets
from rnn_behaviour.lab_report import judge
from rnn_behaviour.lab_report import stage_plan

DATA_DIR = 'data'
FIT_TRIALS = 'fit_trials.csv'
HELDOUT_TRIALS = 'heldout_trials.csv'
SPLIT_FILE = 'split.json'
TIMINGS_FILE = stage_plan.TIMINGS_FILE
DIFFUSION = 'diffusion'              # The diffusion ensemble's last stage: the BNS target.
SELECT = 'select_short'              # Its first: task-optimal selection in the short shape.
SHORT = 'diffusion_short'            # Its second: diffusion on no swaps in the short shape.
HELDOUT_FILE = 'heldout.json'
HELDOUT_SAMPLES = 'heldout_samples.npz'

# A-priori stage costs on this project's 2-core CPU, roughly as measured (README, "Report"); the
# ETA rescales them by how long the finished stages took against their estimate, so a loaded or
# a faster machine corrects them as the run goes.
SECONDS_PER_SAMPLE_STEP = 1.2e-4   # Training, per (display x sample) a step, 64-unit rate cell.
SECONDS_PER_FIT_STEP = 0.05        # One BNS SVI step on ~3000 trials.
SECONDS_PER_FIT = 60.0             # The fit's mixtures, posterior-predictive check and figures.
SECONDS_PER_ANALYSIS = 60.0        # One member's paper-protocol analysis at the laptop sizes.
SECONDS_PER_EVALUATION = 20.0      # One network's evaluation (mostly compilation).
SECONDS_PER_TRAINING_START = 15.0  # A training run's compilation and first checkpoint.


# ------------------------------------------------------------------------------ configs


def _plain(config) -> ml_collections.ConfigDict:
  """An unlocked deep copy of a (possibly locked, flag-parsed) config."""
  return ml_collections.ConfigDict(config.to_dict())


def chosen_set_sizes(config, available) -> list[int]:
  """The set sizes to train networks on: report.set_sizes, else data.set_sizes, else every set
  size of at least 2 in the data. Fails naming the field for a set size the data lack or < 2."""
  wanted = data_lib.parse_selection(config.report.set_sizes, 'set_sizes')
  field = 'config.report.set_sizes'
  if not wanted:
    wanted = data_lib.parse_selection(config.data.set_sizes, 'set_sizes')
    field = 'config.data.set_sizes'
  if not wanted:
    wanted = [n for n in available if n >= 2]
  bad = [n for n in wanted if n < 2]
  if bad:
    raise ValueError(f'{field}: set size(s) {bad} have no non-target to swap to; networks need '
                     'set sizes of 2 or more')
  missing = [n for n in wanted if n not in available]
  if missing:
    raise ValueError(f'{field}: set size(s) {missing} are not in the data (present: '
                     f'{list(available)})')
  if not wanted:
    raise ValueError(f'the data have no set size of 2 or more (present: {list(available)})')
  return sorted(set(int(n) for n in wanted))


def validate(config) -> None:
  """Fails early, naming the field, on a bad report block."""
  r = config.report
  if not 0.0 < float(r.heldout_fraction) < 1.0:
    raise ValueError('config.report.heldout_fraction must be in (0, 1) (the judged trials), got '
                     f'{r.heldout_fraction!r}')
  if not 0.0 < float(r.swap_tolerance) < 1.0:
    raise ValueError(f'config.report.swap_tolerance must be in (0, 1), got {r.swap_tolerance!r}')
  for field in ('example_displays', 'samples_per_trial'):
    if int(r[field]) < 1:
      raise ValueError(f'config.report.{field} must be a positive integer, got {r[field]!r}')
  sel = r.selection
  for field in ('select_steps', 'short_steps'):
    if int(sel[field]) < 0:
      raise ValueError(f'config.report.selection.{field} must be >= 0, got {sel[field]!r}')
  if int(sel.select_steps) > 0 and int(sel.short_steps) < 1:
    raise ValueError('config.report.selection.short_steps must be >= 1 when select_steps > 0 '
                     f'(got {sel.short_steps!r})')
  for field in ('check_every', 'num_displays', 'samples_per_display', 'displays_per_batch'):
    if int(sel[field]) < 1:
      raise ValueError(f'config.report.selection.{field} must be a positive integer, got '
                       f'{sel[field]!r}')
  if not 0.0 < float(sel.members) <= 1.0:
    raise ValueError(f'config.report.selection.members must be in (0, 1], got {sel.members!r}')
  if int(r.baseline_steps) < 0:
    raise ValueError(f'config.report.baseline_steps must be >= 0, got {r.baseline_steps!r}')
  if r.baseline and r.baseline not in objectives.OBJECTIVES:
    raise ValueError(f"config.report.baseline must be '' or one of {objectives.OBJECTIVES}, "
                     f'got {r.baseline!r}')
  if config.behaviour.source != 'bns':
    raise ValueError("config.behaviour.source must be 'bns' for a report (the networks learn "
                     f'the fitted behaviour), got {config.behaviour.source!r}')


def _data_block(path: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(path=path, format='csv', angle_unit='radians',
                                        subjects=(), set_sizes=(), conditions=(),
                                        delay_as_condition=False))


def fit_config(config, workdir: str) -> ml_collections.ConfigDict:
  """The behavioural fit's config: the report's, reading the fitting trials."""
  c = _plain(config)
  del c['report']
  c.data = _data_block(os.fspath(epath.Path(workdir) / DATA_DIR / FIT_TRIALS))
  return c


def run_config(config, workdir: str, set_size: int, objective: str = 'diffusion'
               ) -> ml_collections.ConfigDict:
  """One network run's config: set size N, the fit in DIR/behaviour, evaluation data the held-out
  trials. For the diffusion ensemble this is its last stage's config (the BNS target; the
  curriculum sets where it starts from); the baseline objective trains one network
  (report.baseline_steps if set), from select_short's member 0 when the report has that stage."""
  c = fit_config(config, workdir)
  c.data = _data_block(os.fspath(epath.Path(workdir) / DATA_DIR / HELDOUT_TRIALS))
  c.behaviour.fit = os.fspath(epath.Path(workdir) / 'behaviour')
  c.task.num_items = int(set_size)
  selection = int(config.report.selection.select_steps) > 0
  if objective == 'diffusion':
    if selection:   # As the curriculum records it.
      c.train.init_from = os.fspath(epath.Path(set_size_dir(workdir, set_size)) / SHORT)
    return c
  c.objective.name = objective
  c.train.ensemble_size = 1
  if int(config.report.baseline_steps):
    c.train.num_steps = int(config.report.baseline_steps)
  if selection:
    c.train.init_from = os.fspath(epath.Path(set_size_dir(workdir, set_size)) / SELECT)
    c.train.init_member = 0
  return c


def selection_curriculum(config, workdir: str, set_size: int) -> ml_collections.ConfigDict:
  """The diffusion ensemble's training as a curriculum (rnn_behaviour/curriculum.py) in
  DIR/set_size_N: select_short -> diffusion_short -> diffusion (see report.selection_block).
  With report.selection.select_steps = 0, only the last stage, from scratch."""
  final = run_config(config, workdir, set_size)
  sel = config.report.selection
  no_swaps = paper_targets.target('no_swaps', int(set_size))
  batch = int(sel.displays_per_batch)
  select_steps, short_steps = (short_stage_steps(sel.select_steps, set_size, sel),
                               short_stage_steps(sel.short_steps, set_size, sel))
  stages = []
  if select_steps:
    stages += [
        dict(name=SELECT, start_from='scratch', criterion=dict(min_steps=select_steps),
             overrides=paper_targets.in_short_shape(dict(
                 objective=dict(name='task_optimal'), behaviour=no_swaps,
                 train=dict(num_steps=select_steps, displays_per_batch=batch)))),
        dict(name=SHORT, start_from='', criterion=dict(min_steps=short_steps),
             overrides=paper_targets.in_short_shape(dict(
                 objective=dict(name='diffusion'), behaviour=no_swaps,
                 train=dict(num_steps=short_steps, displays_per_batch=batch)))),
    ]
  stages.append(dict(name=DIFFUSION, start_from='', criterion={}, overrides={}))
  return ml_collections.ConfigDict(dict(
      base=final, overrides={}, stages=tuple(stages),
      # A stage that does not learn does not stop the report: its verdict says so.
      continue_unlearned=True,
      criteria=dict(check_every=int(sel.check_every), min_steps=int(sel.min_steps),
                    num_displays=int(sel.num_displays),
                    samples_per_display=int(sel.samples_per_display),
                    tolerance=float(config.report.swap_tolerance),
                    members=float(sel.members))))


def short_stage_steps(steps, set_size: int, selection) -> int:
  """A short-shape stage's budget at set size N: `steps` (set for two items), times N/2 when
  report.selection.scale_by_set_size."""
  scale = max(1.0, int(set_size) / 2.0) if selection.scale_by_set_size else 1.0
  return int(round(int(steps) * scale))


def stage_names(config) -> list[str]:
  """The diffusion ensemble's curriculum stages, in order."""
  return ([SELECT, SHORT] if int(config.report.selection.select_steps) else []) + [DIFFUSION]


def set_size_dir(workdir: str, set_size: int) -> str:
  return os.fspath(epath.Path(workdir) / f'set_size_{set_size}')


def run_dirs(config, workdir: str, set_size: int) -> dict:
  """{model name: run folder} of one set size: the diffusion ensemble and the baseline."""
  folder = epath.Path(set_size_dir(workdir, set_size))
  dirs = {DIFFUSION: os.fspath(folder / DIFFUSION)}
  if config.report.baseline:
    dirs[config.report.baseline] = os.fspath(folder / config.report.baseline)
  return dirs


# ------------------------------------------------------------------------------- stages


def _read_json(path) -> dict | None:
  path = epath.Path(path)
  return json.loads(path.read_text()) if path.exists() else None


def split_key(config) -> dict:
  """What the split depends on: the data file's bytes, the data block and the split settings."""
  path = data_lib.resolve_path(config.data.path)
  return dict(sha256=fit_config_lib.file_sha256(path), data=json.loads(config.data.to_json()),
              set_sizes=chosen_set_sizes_from_file(config),
              fraction=float(config.report.heldout_fraction), seed=int(config.report.split_seed))


def chosen_set_sizes_from_file(config) -> list[int]:
  return chosen_set_sizes(config, _all_trials(config).set_sizes())


def _all_trials(config) -> data_lib.TrialTable:
  """Every trial of the file under the data block's subject and condition selections."""
  block = _plain(config.data)
  block.set_sizes = ()
  return data_lib.load(block)


def split_done(config, workdir: str) -> bool:
  saved = _read_json(epath.Path(workdir) / DATA_DIR / SPLIT_FILE)
  return saved is not None and saved.get('key') == json.loads(json.dumps(split_key(config)))


def split_stage(config, workdir: str) -> dict:
  """Writes the fitting and held-out trials of the chosen set sizes, and split.json (with the
  whole file's description: trials, subjects, set sizes)."""
  table = _all_trials(config)
  sizes = chosen_set_sizes(config, table.set_sizes())
  chosen = table.select(set_sizes=sizes)
  cells = data_lib.cell_labels(chosen)[1]
  heldout = judge.split_trials(cells, float(config.report.heldout_fraction),
                               int(config.report.split_seed))
  folder = epath.Path(workdir) / DATA_DIR
  data_lib.write_csv(chosen.take(~heldout), os.fspath(folder / FIT_TRIALS))
  data_lib.write_csv(chosen.take(heldout), os.fspath(folder / HELDOUT_TRIALS))
  by_size = []
  for n in table.set_sizes():
    rows = table.set_size == n
    in_chosen = chosen.set_size == n
    by_size.append(dict(set_size=n, trials=int(rows.sum()),
                        subjects=len(set(table.subject[rows].tolist())),
                        fit_trials=int((in_chosen & ~heldout).sum()),
                        heldout_trials=int((in_chosen & heldout).sum()), chosen=n in sizes))
  description = dict(key=split_key(config), path=data_lib.resolve_path(config.data.path),
                     format=config.data.format, trials=len(table),
                     subjects=table.subjects(), conditions=table.conditions(),
                     set_sizes=table.set_sizes(), chosen_set_sizes=sizes, by_set_size=by_size)
  (folder / SPLIT_FILE).write_text(json.dumps(description, indent=1))
  return description


def fit_done(config, workdir: str) -> bool:
  summary = _read_json(epath.Path(workdir) / 'behaviour' / 'summary.json')
  if not summary or not summary.get('complete'):
    return False
  c = fit_config(config, workdir)
  if not epath.Path(c.data.path).exists():
    return False
  inputs = fit_config_lib.input_fingerprint(c, data_lib.resolve_path(c.data.path))
  return summary.get('inputs', {}).get('key') == inputs['key']


def latest_step(config, run_dir: str) -> int | None:
  """The run's latest checkpointed step (Orbax's manager says), None without checkpoints."""
  if not workdir_lib.has_checkpoint(run_dir):
    return None
  manager = train.checkpoint_manager(run_dir, config.train, read_only=True)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def trained(config, run_dir: str) -> bool:
  return latest_step(config, run_dir) == int(config.train.num_steps)


def stage_trained(chain, workdir: str, set_size: int, name: str) -> bool:
  """Whether a curriculum stage of set size N has ended (learned, or its budget spent) and
  recorded its criterion."""
  folder = set_size_dir(workdir, set_size)
  c = curriculum_lib.stage_config(chain, name, folder)
  stage_dir = curriculum_lib.stage_workdir(folder, name)
  return (curriculum_lib.is_finished(c, stage_dir)
          and criteria.read_record(stage_dir) is not None)


def train_stage(chain, workdir: str, set_size: int, name: str) -> None:
  """Trains one curriculum stage of set size N (and any it starts from that has not ended)."""
  folder = set_size_dir(workdir, set_size)
  config_validation.validate(curriculum_lib.stage_config(chain, name, folder))
  curriculum_lib.run(chain, folder, stages=[name])


def eval_summaries(config, run_dir: str) -> list[dict | None]:
  size = train.ensemble_size(config)
  members = [None] if size == 1 else list(range(size))
  # A folder an interrupted evaluation left without its completeness marker counts as absent.
  return [evaluate.read_summary(run_dir, m) for m in members]


def evaluated(config, run_dir: str) -> bool:
  step = latest_step(config, run_dir)
  return step is not None and all(s is not None and s.get('trained_steps') == step
                                  for s in eval_summaries(config, run_dir))


def heldout_trials(workdir: str, set_size: int) -> data_lib.TrialTable:
  block = _data_block(os.fspath(epath.Path(workdir) / DATA_DIR / HELDOUT_TRIALS))
  block.set_sizes = (int(set_size),)
  return data_lib.load(block)


def judged(config, workdir: str, set_size: int) -> bool:
  saved = _read_json(epath.Path(set_size_dir(workdir, set_size)) / HELDOUT_FILE)
  if saved is None:
    return False
  steps = {name: latest_step(run_config(config, workdir, set_size, _objective(name)), d)
           for name, d in run_dirs(config, workdir, set_size).items()}
  return (saved.get('trained_steps') == steps
          and saved.get('samples_per_trial') == int(config.report.samples_per_trial))


def _objective(name: str) -> str:
  return 'diffusion' if name == DIFFUSION else name


def judge_stage(config, workdir: str, set_size: int) -> dict:
  """Samples every member, the baseline and the BNS on the held-out trials of `set_size` and
  writes heldout.json (judge.judge_samples per model, members as `member_<i>`) and the samples
  (heldout_samples.npz, for the figures)."""
  table = heldout_trials(workdir, set_size)
  displays = table.displays()
  observed = np.asarray(table.response, np.float32)
  num_samples = int(config.report.samples_per_trial)
  seed = int(config.eval.seed)
  samples, steps, seeds = {}, {}, {}
  for index, (name, run_dir) in enumerate(run_dirs(config, workdir, set_size).items()):
    c = run_config(config, workdir, set_size, _objective(name))
    size = train.ensemble_size(c)
    members = [None] if size == 1 else list(range(size))
    for member in members:
      sample, state = train.load_trained(c, run_dir, member=member)
      label = name if member is None else f'member_{member}'
      progress.say(f'  held-out trials of set size {set_size}: {label} ({table.num_trials} '
                   f'trials x {num_samples} samples)')
      samples[label] = np.asarray(sample.chunked(
          state.variables, displays, judge.sample_key(seed, set_size, index, member or 0),
          num_samples, evaluate.DISPLAYS_PER_CHUNK))
      seeds[label] = train.member_seeds(c)[member or 0]
    steps[name] = latest_step(c, run_dir)
  c = run_config(config, workdir, set_size)
  target = source.target_model_from_config(c)
  samples['bns'] = np.asarray(jax.jit(target.sample_responses, static_argnums=2)(
      judge.sample_key(seed, set_size, 99), displays, num_samples))
  edges = evaluate.cue_bin_edges(c.eval.num_cue_bins, c.task.min_separation_cue)
  result = judge.judge_samples(samples, displays, observed, edges,
                               float(c.eval.kde_concentration))
  weights = np.asarray(target.mixture_weights(displays))
  result = dict(result, trained_steps=steps, seeds=seeds, samples_per_trial=num_samples,
                edges=np.asarray(edges).tolist(),
                centres=(0.5 * (edges[1:] + edges[:-1])).tolist(),
                kde_concentration=float(c.eval.kde_concentration),
                examples=judge_examples(weights, np.asarray(displays.cued),
                                        int(config.report.example_displays)))
  folder = epath.Path(set_size_dir(workdir, set_size))
  with (folder / HELDOUT_SAMPLES).open('wb') as f:
    np.savez(f, cue=np.asarray(displays.cue), report=np.asarray(displays.report),
             cued=np.asarray(displays.cued), observed=observed, weights=weights,
             **{f'samples_{k}': v for k, v in samples.items()})
  (folder / HELDOUT_FILE).write_text(json.dumps(result, indent=1))
  return result


def judge_examples(weights, cued, count: int) -> list[int]:
  """Indices of `count` held-out trials spread over the BNS's non-target weight, the most
  swap-prone first (weights (K, N + 1): guess, then items)."""
  items = weights.shape[1] - 1
  nontarget = np.where(np.arange(items)[None] != cued[:, None], weights[:, 1:], 0.0).max(axis=1)
  order = np.argsort(-nontarget, kind='stable')
  picks = np.unique(np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int))
  return order[picks].tolist()


def analysed(config, workdir: str, set_size: int) -> bool:
  c = run_config(config, workdir, set_size)
  size = train.ensemble_size(c)
  members = [None] if size == 1 else list(range(size))
  run_dir = run_dirs(config, workdir, set_size)[DIFFUSION]
  step = latest_step(c, run_dir)
  for member in members:
    summary = _read_json(epath.Path(run_paper.member_folder(run_dir, member)) / 'summary.json')
    if summary is None or summary.get('trained_steps') != step:
      return False
  return True


def mechanism_stage(config, workdir: str, set_size: int) -> None:
  """The paper protocol on every member; stale analyses (of an earlier training) are redone."""
  c = run_config(config, workdir, set_size)
  run_dir = run_dirs(config, workdir, set_size)[DIFFUSION]
  step = latest_step(c, run_dir)
  size = train.ensemble_size(c)
  for member in [None] if size == 1 else range(size):
    path = epath.Path(run_paper.member_folder(run_dir, member)) / 'summary.json'
    summary = _read_json(path)
    if summary is not None and summary.get('trained_steps') != step:
      path.unlink()
  run_paper.analyse(c, run_dir)


# ------------------------------------------------------------------------------- the loop


def _train(c, run_dir: str) -> None:
  config_validation.validate(c)
  train.train(c, run_dir)


STAGE_WHAT = {SELECT: 'task-optimal selection of the cued item in the short shape',
              SHORT: 'diffusion on no swaps in the short shape',
              DIFFUSION: 'diffusion on the BNS posterior predictive'}
FULL_SHAPE_STEPS = 26 + 40          # The default epochs' time steps plus T (the estimates' unit).


def _train_estimate(c) -> float:
  """A-priori seconds of a training run: its budget x batch x ensemble, by the cell's size and
  the trial's length in time steps."""
  t = c.train
  length = sum(int(v) for v in c.task.epochs.values()) + int(c.diffusion.num_steps)
  return SECONDS_PER_TRAINING_START + (
      float(t.num_steps) * train.ensemble_size(c) * t.displays_per_batch * t.samples_per_display
      * SECONDS_PER_SAMPLE_STEP * (c.model.num_units / 64.0) * length / FULL_SHAPE_STEPS)


def plan(config, workdir: str) -> list[stage_plan.Stage]:
  """The report's stages for this config (see the module docstring)."""
  sizes = chosen_set_sizes_from_file(config)
  stages = [
      stage_plan.Stage('split the trials', lambda: split_stage(config, workdir),
                       lambda: split_done(config, workdir), 5.0),
      stage_plan.Stage('fit the behavioural models',
                       lambda: pipeline.fit_behaviour(fit_config(config, workdir), workdir),
                       lambda: fit_done(config, workdir),
                       SECONDS_PER_FIT_STEP * (config.fit.svi_steps
                                               + config.fit.cv_folds * config.fit.cv_svi_steps)
                       + SECONDS_PER_FIT)]
  for n in sizes:
    dirs = run_dirs(config, workdir, n)
    chain = selection_curriculum(config, workdir, n)
    size = int(config.train.ensemble_size)
    for name in stage_names(config):
      c = curriculum_lib.stage_config(chain, name, set_size_dir(workdir, n))
      stages.append(stage_plan.Stage(
          f'set size {n}: train {size} networks, {STAGE_WHAT[name]} (at most '
          f'{c.train.num_steps} steps)',
          lambda chain=chain, n=n, name=name: train_stage(chain, workdir, n, name),
          lambda chain=chain, n=n, name=name: stage_trained(chain, workdir, n, name),
          _train_estimate(c)))
    for name, run_dir in dirs.items():
      if name == DIFFUSION:
        continue
      c = run_config(config, workdir, n, _objective(name))
      stages.append(stage_plan.Stage(f'set size {n}: train the {name} baseline',
                                     lambda c=c, d=run_dir: _train(c, d),
                                     lambda c=c, d=run_dir: trained(c, d), _train_estimate(c)))
    for name, run_dir in dirs.items():
      c = run_config(config, workdir, n, _objective(name))
      stages.append(stage_plan.Stage(f'set size {n}: evaluate {name}',
                                     lambda c=c, d=run_dir: evaluate.evaluate(c, d),
                                     lambda c=c, d=run_dir: evaluated(c, d),
                                     SECONDS_PER_EVALUATION * train.ensemble_size(c)))
    stages.append(stage_plan.Stage(f'set size {n}: judge on the held-out trials',
                                   lambda n=n: judge_stage(config, workdir, n),
                                   lambda n=n: judged(config, workdir, n),
                                   SECONDS_PER_EVALUATION * len(dirs)))
    if n == 2:
      stages.append(stage_plan.Stage(f'set size {n}: mechanism analyses of every member',
                                     lambda n=n: mechanism_stage(config, workdir, n),
                                     lambda n=n: analysed(config, workdir, n),
                                     SECONDS_PER_ANALYSIS * int(config.train.ensemble_size)))
  return stages
