"""`fit_behaviour(config, workdir)`: fit the behavioural models a config names, write the results.

Into `<workdir>/behaviour/`, each file as soon as its stage is done (so a later failure loses
nothing), in this order:

  mixture_fits.csv      per cell x mixture model: subject, set_size, condition, model, kappa,
                        sd, p_t, p_n, p_u, loglik, n, aic, bic, warning (small cells, and
                        parameters on a bound: kappa at its clip, a weight at 0 or 1);
                        mixture_fits.json holds the same fits at full precision (the cache).
  bns_fit/              the BNS fit (fit.json with spec, config and cache key, samples.npz,
                        guide params); `surrogate.load_response_model(<workdir>/behaviour, N)`
                        reads it.
  swap_function.csv     set_size, dimension, distance, logit_mean, logit_lower, logit_upper
                        (90% band over posterior draws), n (trials of the set size), warning.
  ppc_nontarget_proximity.csv, .png
                        posterior-predictive check of the cue-similarity effect (see
                        `checks.nontarget_proximity_check`): per set size and cue distance,
                        the share of responses within 0.4 rad of a non-target and more than
                        0.8 rad from the target, data against the model's 90% predictive band.
  error_histograms.png  response-error histograms per set size with each model's predictive
                        error density on the same trials.
  swap_probability.png  per set size: P(report a non-target) against its cue distance, BNS
                        posterior mean and 90% band; the binned empirical rate of responses
                        nearest a non-target, with the rate BNS predicts for the same statistic.
  cv/<model>.json       each model's k-fold held-out lpd per trial and per-fold status, written
                        as each model finishes.
  model_comparison.csv  model, heldout_lpd, se, n, warning: k-fold held-out log predictive
                        density (summed over the n trials every model scored, nats) and its
                        standard error sqrt(n var(lpd_t)); rewritten after every model.
  summary.json          what was written, headline numbers, warnings, and `inputs` (the cache
                        key); rewritten after every stage with `complete` false until the end.

Caching. Every cached result is keyed on a SHA-256 of what it depends on: the data file's
bytes, the resolved `data` block (absolute path, parsed selections) and the `fit` block (the
main BNS fit only on the fields that change it). A rerun with the same key returns the saved
summary; anything changed refits, and a log line says what changed. A run that failed or was
killed part-way resumes: every stage that finished whole is read back, not recomputed: the
mixture fits (`mixture_fits.json`, same key), the main BNS fit (`bns_fit/fit.json`, written
after its arrays, same BNS key), each cross-validated model (`cv/<model>.json`) and, inside a
BNS model's cross-validation, each fold (`cv/<model>/fold_<k>.json`, saved as it is scored; the
folds left are fitted together again).

Trust. Cells with fewer than `config.fit.min_cell_trials` trials (default 30; see the config)
are fitted but flagged, in the log and in the `warning` column of every CSV. Diverged SVI fits
restart at a lower step size; a CV fold that never converges is skipped and flagged.
Progress lines (stage, fold or model, step) appear at most every `config.fit.progress_seconds`.

Files go through etils `epath`: the workdir (and the data file) may be a cloud path
(`gs://bucket/run`). Locally each CSV and JSON is replaced atomically; on an object store one
object write is atomic by itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from etils import epath
import jax
import numpy as np

from rnn_behaviour import files
from rnn_behaviour.behaviour import bns as bns_lib
from rnn_behaviour.behaviour import bns_cv
from rnn_behaviour.behaviour import bns_files
from rnn_behaviour.behaviour import checks
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import fit_config
from rnn_behaviour.behaviour import mixture
from rnn_behaviour.behaviour import progress
from rnn_behaviour.behaviour import surrogate
from rnn_behaviour.behaviour import trial_files

COMPARISON_COLUMNS = ('model', 'heldout_lpd', 'se', 'n', 'warning')
SWAP_FILE_COLUMNS = bns_lib.SWAP_COLUMNS + ('n', 'warning')
def _write_rows(path, columns, rows):
  files.write_csv(path, columns, rows, atomic=True)


def _write_json(path, obj):
  files.write_text_atomic(path, json.dumps(obj, indent=2, default=str))


def _read_json(path):
  try:
    return json.loads(epath.Path(path).read_text())
  except (OSError, ValueError):
    return None


def _join(folder: str, name: str) -> str:
  """`folder/name` as a string, for local and cloud folders alike."""
  return os.fspath(epath.Path(folder) / name)


def _variant_name(spec: bns_lib.BNSSpec) -> str:
  return f'bns_{spec.dimension}_{spec.emission}'


def _bns_kwargs(fc, cv: bool = False):
  steps = int(fc.cv_svi_steps) if cv and fc.get('cv_svi_steps', 0) else int(fc.svi_steps)
  return dict(num_steps=steps, learning_rate=float(fc.svi_learning_rate), guide=fc.guide,
              max_restarts=int(fit_config.fit_value(fc, 'svi_max_restarts')),
              restart_lr_factor=float(fit_config.fit_value(fc, 'svi_restart_lr_factor')))


def _swap_rows(table, fit, min_trials):
  counts = {n: int(np.sum(table.set_size == n)) for n in table.set_sizes()}
  rows = []
  for r in bns_lib.swap_function_grid(fit):
    n = counts.get(r['set_size'], 0)
    rows.append(dict(r, n=n, warning=mixture.small_cell_warning(n, min_trials)))
  return rows


def _small_cell_warnings(table, min_trials) -> list[str]:
  """One line per kind of small cell: (subject, set size, condition) cells, and subjects."""
  cells, index = data_lib.cell_labels(table)
  counts = np.bincount(index, minlength=len(cells))
  out = []
  small = [(c, int(n)) for c, n in zip(cells, counts) if n < min_trials]
  if small:
    listed = ', '.join(f'subject {c[0]!r} set size {c[1]}'
                       + (f' condition {c[2]!r}' if c[2] else '') + f' (n={n})'
                       for c, n in small[:8])
    more = f' and {len(small) - 8} more' if len(small) > 8 else ''
    out.append(f'{len(small)} of {len(cells)} cells have fewer than {min_trials} trials '
               f'(config.fit.min_cell_trials); their fits are unreliable: {listed}{more}')
  return out


def _bound_warnings(fits: list) -> list[str]:
  """One line per mixture model with cells whose parameters sit on a bound."""
  out = []
  for f in fits:
    on = f.bound_cells()
    if on:
      listed = '; '.join(f'subject {c[0]!r} set size {c[1]}' + (f' condition {c[2]!r}' if c[2]
                                                                 else '') + f': {w}'
                         for c, w in on[:4])
      more = f' and {len(on) - 4} more' if len(on) > 4 else ''
      out.append(f'{f.model} mixture: {len(on)} of {len(f.cells)} cells have a parameter on a '
                 f'bound (see the warning column of mixture_fits.csv): {listed}{more}')
  return out


def fit_behaviour(config, workdir: str) -> dict:
  """Fits mixtures and BNS to the data `config.data` names; writes `<workdir>/behaviour/*`.

  Returns a dict: `dir`, paths of every file written (`mixture_fits`, `model_comparison`,
  `swap_function`, `bns_fit`, `ppc`, `plots`), `timings` (seconds), `comparison` rows,
  `warnings` and `inputs` (the cache key, see `input_fingerprint`).
  """
  fit_config.validate_config(config)
  fc = config.fit
  data_path = data_lib.resolve_path(config.data.path)
  trial_files.check_file(data_path)
  # The data are read (and every row checked) before anything is written: a bad file leaves
  # no empty behaviour/ folder behind.
  table = data_lib.load(config.data)
  fit_config.check_data_for_fit(table, fc)
  out = _join(workdir, 'behaviour')
  epath.Path(out).mkdir(parents=True, exist_ok=True)
  inputs = fit_config.input_fingerprint(config, data_path)
  previous = _finished_before(out, inputs)
  if previous is not None:
    return previous
  run = _FitRun(out=out, cfg=fit_config.config_dict(config), inputs=inputs, table=table,
                fc=fc,
                tick=progress.Throttle(float(fit_config.fit_value(fc, 'progress_seconds'))),
                min_trials=int(fit_config.fit_value(fc, 'min_cell_trials')))
  key_fit, key_cv, key_plot = jax.random.split(jax.random.PRNGKey(int(fc.seed)), 3)
  fits = _mixtures(run)
  fit = _main_bns_fit(run, key_fit)
  ppc = _predictive_check(run, fit, key_plot)
  _figures(run, fits, fit, ppc, key_plot)
  _model_comparison(run, key_cv)
  summary = run.save_summary(True)
  run.stage(len(run.stages), f'done; results in {out}')
  return summary


def _finished_before(out: str, inputs: dict) -> dict | None:
  """The summary of a finished fit of the same inputs, reused; None (and why, in the log)
  when the fit must run."""
  previous = _read_json(_join(out, 'summary.json'))
  if previous is None:
    return None
  same = previous.get('inputs', {}).get('key') == inputs['key']
  if same and previous.get('complete'):
    progress.info(f'fit_behaviour: inputs unchanged (key {inputs["key"][:12]}); reusing {out}')
    return previous
  progress.info(f'fit_behaviour: refitting into {out}: ' + (
      'the previous run did not finish; stages it finished are reused' if same
      else fit_config.describe_changes(previous.get('inputs'), inputs)))
  return None


@dataclasses.dataclass
class _FitRun:
  """One `fit_behaviour` run: where it writes, what it fits, and what it has found so far."""
  out: str
  cfg: dict
  inputs: dict
  table: data_lib.TrialTable
  fc: object
  tick: progress.Throttle
  min_trials: int
  timings: dict = dataclasses.field(default_factory=dict)
  warnings: list = dataclasses.field(default_factory=list)
  paths: dict = dataclasses.field(default_factory=dict)
  comparison: list = dataclasses.field(default_factory=list)

  @property
  def stages(self) -> list[str]:
    return ['mixtures', 'BNS fit', 'posterior-predictive check', 'plots'] + (
        ['cross-validation'] if self.fc.cv_folds else [])

  def stage(self, i: int, text: str) -> None:
    self.tick(f'fit_behaviour [{i}/{len(self.stages)} {self.stages[i - 1]}]: {text}',
              force=True)

  def warn(self, message: str) -> None:
    self.warnings.append(message)
    progress.warning(message)

  def save_summary(self, complete: bool) -> dict:
    summary = dict(dir=self.out, config=self.cfg, inputs=self.inputs, complete=complete,
                   timings=self.timings, comparison=self.comparison,
                   num_trials=len(self.table), warnings=self.warnings, **self.paths)
    _write_json(_join(self.out, 'summary.json'), summary)
    return summary


def _mixtures(run: _FitRun) -> list:
  """Stage 1: mixture models, every cell at once (reused when an earlier run finished them)."""
  t0 = time.time()
  fits = _mixture_stage(run.table, run.fc, run.inputs, run.out, lambda text: run.stage(1, text))
  for w in _small_cell_warnings(run.table, run.min_trials):
    run.warn(w)
  run.timings['mixture'] = time.time() - t0
  for w in _bound_warnings(fits):
    run.warn(w)
  run.paths['mixture_fits'] = _join(run.out, 'mixture_fits.csv')
  mixture.write_fits_csv(fits, run.paths['mixture_fits'], run.min_trials)
  run.save_summary(False)
  return fits


def _main_bns_fit(run: _FitRun, key_fit) -> bns_lib.BNSFit:
  """Stage 2: the main BNS fit (reused when its own key matches: a rerun after a later
  failure), and its swap function table."""
  fc, table = run.fc, run.table
  spec = bns_lib.spec_from_config(fc)
  fit_dir = _join(run.out, surrogate.FIT_SUBDIR)
  cached = _read_json(_join(fit_dir, 'fit.json'))
  t0 = time.time()
  fit = None
  if cached and cached.get('info', {}).get('cache_key') == run.inputs['bns_key']:
    try:
      fit = bns_files.load(fit_dir)
      run.stage(2, f'reusing the fit in {fit_dir} (same data and BNS settings)')
    except (OSError, ValueError, KeyError) as e:      # Arrays unreadable: fit again.
      run.warn(f'BNS fit: the saved fit in {fit_dir} cannot be read ({e}); fitting again')
  if fit is None:
    run.stage(2, f'{spec.dimension} / {spec.emission}, {fc.inference}, {len(table)} trials')
    if spec.subject_effects:
      per_subject = {s: int(np.sum(table.subject == s)) for s in table.subjects()}
      few = {s: n for s, n in per_subject.items() if n < run.min_trials}
      if few:
        run.warn(f'subject_effects: subjects {few} have fewer than {run.min_trials} trials; '
                 'their guess rate and precision are mostly the prior')
    fit = bns_lib.fit(key_fit, table, spec, inference=fc.inference,
                      num_samples=int(fc.num_posterior_samples),
                      num_warmup=int(fc.nuts_warmup), tick=run.tick, **_bns_kwargs(fc))
    fit.info['cache_key'] = run.inputs['bns_key']
    restarts = [a for a in fit.info.get('svi_attempts', []) if a['diverged']]
    if restarts:
      run.warn(f'BNS fit: SVI diverged {len(restarts)} time(s) ({restarts[0]["diverged"]}); '
               f'recovered at learning rate {fit.info["learning_rate"]:.3g}')
    bns_files.save(fit, fit_dir, config=run.cfg)
  run.timings['bns'] = time.time() - t0
  run.paths['bns_fit'] = fit_dir
  run.paths['swap_function'] = _join(run.out, 'swap_function.csv')
  _write_rows(run.paths['swap_function'], SWAP_FILE_COLUMNS,
              _swap_rows(table, fit, run.min_trials))
  run.save_summary(False)
  return fit


def _predictive_check(run: _FitRun, fit, key_plot) -> list[dict]:
  """Stage 3: the posterior-predictive check of the cue-similarity effect."""
  draws = int(fit_config.fit_value(run.fc, 'ppc_draws'))
  run.stage(3, f'{draws} replicate data sets')
  t0 = time.time()
  ppc = checks.nontarget_proximity_check(jax.random.fold_in(key_plot, 2), run.table, fit,
                                         num_draws=draws, min_count=run.min_trials)
  run.paths['ppc'] = _join(run.out, 'ppc_nontarget_proximity.csv')
  _write_rows(run.paths['ppc'], checks.PPC_COLUMNS, ppc)
  outside = [r for r in ppc if 'outside' in r['warning']]
  if outside:
    run.warn('posterior-predictive check: the data fall outside the model\'s 90% band in '
             + ', '.join(f'set size {r["set_size"]} at cue distance {r["cue_distance"]:.2f} '
                         f'(data {r["data_rate"]:.3f}, model {r["model_lower"]:.3f}-'
                         f'{r["model_upper"]:.3f})' for r in outside[:6])
             + ' (see ppc_nontarget_proximity.csv)')
  run.timings['ppc'] = time.time() - t0
  run.save_summary(False)
  return ppc


def _figures(run: _FitRun, fits, fit, ppc, key_plot) -> None:
  """Stage 4: the check's figure, the error histograms and the swap probability."""
  run.paths['plots'] = []
  t0 = time.time()
  if fit_config.fit_value(run.fc, 'plots'):
    run.stage(4, 'posterior-predictive check, error histograms, swap probability')
    out = run.out
    run.paths['plots'] = [
        checks.plot_nontarget_proximity(ppc, _join(out, 'ppc_nontarget_proximity.png')),
        checks.plot_error_histograms(run.table, fits, fit, _join(out, 'error_histograms.png'),
                                     key_plot),
        checks.plot_swap_probability(run.table, fit, _join(out, 'swap_probability.png'),
                                     jax.random.fold_in(key_plot, 1))]
  else:
    run.stage(4, 'skipped (config.fit.plots=False)')
  run.timings['plots'] = time.time() - t0
  run.save_summary(False)


def _model_comparison(run: _FitRun, key_cv) -> None:
  """Stage 5: model comparison by k-fold held-out log predictive density, one model at a
  time (an empty table without cross-validation)."""
  run.paths['model_comparison'] = _join(run.out, 'model_comparison.csv')
  _write_rows(run.paths['model_comparison'], COMPARISON_COLUMNS, [])
  if run.fc.cv_folds:
    t0 = time.time()
    run.comparison[:] = _cross_validation_stage(
        run.table, run.fc, bns_lib.spec_from_config(run.fc), key_cv, run.inputs, run.out,
        run.tick, lambda text: run.stage(5, text), run.warn, run.min_trials,
        run.paths['model_comparison'])
    run.timings['cross_validation'] = time.time() - t0


def _mixture_stage(table, fc, inputs, out, stage) -> list:
  """The mixture fits of every model, read back from `mixture_fits.json` when an earlier run
  with the same cache key (`inputs['key']`) finished them, else fitted and saved there."""
  path = _join(out, 'mixture_fits.json')
  models = [str(m) for m in fc.mixture_models]
  cells = len(data_lib.cell_labels(table)[0])
  cached = _read_json(path)
  if (cached and cached.get('key') == inputs['key']
      and [f.get('model') for f in cached.get('fits', [])] == models):
    try:
      fits = [mixture.MixtureFits.from_json(f) for f in cached['fits']]
      stage(f'reusing {path} ({cells} cells, models {models}: finished by an earlier run)')
      return fits
    except (KeyError, TypeError, ValueError):
      pass                                             # Unreadable: fitted again below.
  stage(f'{len(table)} trials, {cells} cells, models {models}')
  fits = [mixture.fit(table, m) for m in models]
  _write_json(path, dict(key=inputs['key'], fits=[f.to_json() for f in fits]))
  return fits


def _fold_results(fold_dir: str, key: str) -> dict:
  """{fold: result} of the folds saved in `fold_dir` under cache key `key` (others ignored)."""
  done = {}
  folder = epath.Path(fold_dir)
  if not folder.exists():
    return done
  for path in sorted(folder.glob('fold_*.json')):
    saved = _read_json(path)
    if saved and saved.get('key') == key and 'result' in saved:
      done[int(saved['fold'])] = saved['result']
  return done


def _cross_validation_stage(table, fc, spec, key_cv, inputs, out, tick, stage, warn,
                            min_trials, comparison_path) -> list[dict]:
  """Fits every model of the comparison fold by fold; caches each model as it finishes."""
  folds = bns_cv.make_folds(key_cv, len(table), int(fc.cv_folds))
  per_fold = np.bincount(folds)
  if per_fold.min() < min_trials:
    warn(f'cross-validation: folds of {per_fold.min()} held-out trials (< {min_trials}, '
         'config.fit.min_cell_trials); the comparison is noisy')
  cv_dir = _join(out, 'cv')
  epath.Path(cv_dir).mkdir(parents=True, exist_ok=True)
  variants = [spec] + [bns_lib.BNSSpec(**dict(spec.to_json(), dimension=dim, emission=em))
                       for dim in fc.compare_dimensions for em in fc.compare_emissions]
  jobs = [(f'mixture_{m}', m) for m in fc.mixture_models]
  for i, v in enumerate(variants):
    if all(name != _variant_name(v) for name, _ in jobs):
      jobs.append((_variant_name(v), (i, v)))
  results = {}
  for j, (name, what) in enumerate(jobs):
    path = _join(cv_dir, f'{name}.json')
    cached = _read_json(path)
    if cached and cached.get('key') == inputs['key']:
      stage(f'model {j + 1}/{len(jobs)} {name}: reusing {path}')
      results[name] = cached
      continue
    stage(f'model {j + 1}/{len(jobs)} {name}, {int(fc.cv_folds)} folds')
    if isinstance(what, str):
      lpd = mixture.cross_validate(table, what, folds)
      report = [dict(fold=k, num_heldout=int(np.sum(folds == k)), status='ok', attempts=[])
                for k in range(int(fc.cv_folds))]
    else:
      i, v = what
      # Each fold's result is saved as it is scored; a rerun refits only the others.
      fold_dir = _join(cv_dir, name)
      epath.Path(fold_dir).mkdir(parents=True, exist_ok=True)
      save_fold = lambda k, result, fold_dir=fold_dir: _write_json(
          _join(fold_dir, f'fold_{k}.json'), dict(key=inputs['key'], fold=k, result=result))
      res = bns_cv.cross_validate_folds(jax.random.fold_in(key_cv, i), table, v, folds,
                                         tick=tick, label=f'CV {name}',
                                         done=_fold_results(fold_dir, inputs['key']),
                                         on_fold=save_fold, **_bns_kwargs(fc, cv=True))
      lpd, report = res.lpd, res.folds
      for f in res.folds:
        if f['status'] != 'ok':
          warn(f'cross-validation {name}: fold {f["fold"] + 1} {f["status"]} '
               f'({"; ".join(str(a["diverged"]) for a in f["attempts"] if a["diverged"])})')
    results[name] = dict(key=inputs['key'], model=name,
                         lpd=[None if not np.isfinite(x) else float(x) for x in lpd],
                         folds=report)
    _write_json(path, results[name])
    rows = comparison_rows(results, min_trials)
    _write_rows(comparison_path, COMPARISON_COLUMNS, rows)
  return comparison_rows(results, min_trials)


def comparison_rows(results: dict, min_trials: int) -> list[dict]:
  """Rows of `COMPARISON_COLUMNS` from per-model CV results, best model first.

  Every model is scored on the same trials: those that every model could score (a skipped
  fold's trials drop out for all), so that the sums stay comparable. `se` is NaN when fewer
  than 2 trials are scored (a spread of one trial is not an error bar).
  """
  lpds = {n: np.array([np.nan if x is None else x for x in r['lpd']], np.float64)
          for n, r in results.items()}
  common = np.all(np.isfinite(np.stack(list(lpds.values()))), axis=0)
  n = int(common.sum())
  rows = []
  for name, lpd in lpds.items():
    notes = []
    bad = [f for f in results[name]['folds'] if f['status'] != 'ok']
    if bad:
      notes.append(', '.join(f'fold {f["fold"] + 1} {f["status"]}' for f in bad))
    if n < len(lpd):
      notes.append(f'scored on {n} of {len(lpd)} trials (skipped folds)')
    if n < min_trials:
      notes.append(mixture.small_cell_warning(n, min_trials))
    x = lpd[common]
    rows.append(dict(model=name, heldout_lpd=float(x.sum()),
                     se=float(np.sqrt(n * x.var())) if n >= 2 else float('nan'), n=n,
                     warning='; '.join(notes)))
  rows.sort(key=lambda r: -r['heldout_lpd'])
  return rows
