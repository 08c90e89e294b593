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
                        `nontarget_proximity_check`): per set size and cue distance, the share
                        of responses within 0.4 rad of a non-target and more than 0.8 rad from
                        the target, data against the model's 90% predictive band.
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

import csv
import hashlib
import io
import json
import os
import time

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import errors
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.behaviour import bns as bns_lib
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import mixture
from rnn_behaviour.behaviour import progress
from rnn_behaviour.behaviour import surrogate

COMPARISON_COLUMNS = ('model', 'heldout_lpd', 'se', 'n', 'warning')
SWAP_FILE_COLUMNS = bns_lib.SWAP_COLUMNS + ('n', 'warning')
PPC_COLUMNS = ('set_size', 'cue_distance', 'n_nontargets', 'n', 'data_rate', 'data_se',
               'model_mean', 'model_lower', 'model_upper', 'ppp', 'warning')
# Defaults of the robustness fields, for configs written before they existed.
FIT_DEFAULTS = dict(min_cell_trials=30, svi_max_restarts=2, svi_restart_lr_factor=0.3,
                    progress_seconds=5.0, ppc_draws=200, plots=True)
# Fields of config.fit that do not change the main BNS fit (only mixtures, CV or reporting).
_NOT_BNS_FIELDS = ('mixture_models', 'cv_folds', 'cv_svi_steps', 'compare_dimensions',
                   'compare_emissions', 'min_cell_trials', 'progress_seconds', 'ppc_draws',
                   'plots')
# A bad value of the data or fit block: a ValueError and a UserError (errors.py).
ConfigError = errors.ConfigError


def _check(value, allowed, name):
  if value not in allowed:
    raise ConfigError(f'{name} must be ' + ' or '.join(repr(a) for a in allowed)
                      + f', got {value!r}')


def _fit_value(fc, name):
  return fc.get(name, FIT_DEFAULTS[name])


def validate_config(config) -> None:
  """Raises ValueError naming the first bad field of the `data` and `fit` blocks."""
  for block in ('data', 'fit'):
    if block not in config:
      raise ConfigError(f'config.{block} is missing (use configs/fit_bays2009.py or fit_csv.py)')
  d, f = config.data, config.fit
  _check(d.format, ('bays2009', 'csv'), 'config.data.format')
  _check(d.angle_unit, data_lib.ANGLE_UNITS, 'config.data.angle_unit')
  for name in data_lib.SELECTION_FIELDS:
    data_lib.parse_selection(d.get(name), name)        # Raises naming config.data.<name>.
  _check(f.inference, bns_lib.INFERENCES, 'config.fit.inference')
  _check(f.bns_dimension, bns_lib.DIMENSIONS, 'config.fit.bns_dimension')
  _check(f.emission, bns_lib.EMISSIONS, 'config.fit.emission')
  _check(f.guide, ('mvn', 'normal'), 'config.fit.guide')
  for m in f.mixture_models:
    _check(m, mixture.MODELS, 'config.fit.mixture_models[...]')
  for m in f.compare_dimensions:
    _check(m, bns_lib.DIMENSIONS, 'config.fit.compare_dimensions[...]')
  for m in f.compare_emissions:
    _check(m, bns_lib.EMISSIONS, 'config.fit.compare_emissions[...]')
  if f.cv_folds == 1 or f.cv_folds < 0:
    raise ConfigError(f'config.fit.cv_folds must be 0 (no comparison) or >= 2, got {f.cv_folds}')
  for name in ('svi_steps', 'num_posterior_samples', 'num_fourier'):
    if f[name] < (0 if name == 'num_fourier' else 1):
      raise ConfigError(f'config.fit.{name} must be positive, got {f[name]}')
  positive = lambda v: isinstance(v, (int, float)) and np.isfinite(v) and v > 0
  if not positive(f.svi_learning_rate):
    raise ConfigError('config.fit.svi_learning_rate must be a finite number > 0 (0 would return '
                      f'the prior as the fit), got {f.svi_learning_rate!r}')
  if f.get('cv_svi_steps', 0) < 0:
    raise ConfigError(f'config.fit.cv_svi_steps must be >= 0 (0: svi_steps), got '
                      f'{f.cv_svi_steps}')
  if f.inference == 'nuts' and f.nuts_warmup < 1:
    raise ConfigError(f'config.fit.nuts_warmup must be >= 1 for NUTS, got {f.nuts_warmup}')
  if _fit_value(f, 'min_cell_trials') < 1:
    raise ConfigError('config.fit.min_cell_trials must be >= 1, got '
                      f'{_fit_value(f, "min_cell_trials")}')
  if _fit_value(f, 'svi_max_restarts') < 0:
    raise ConfigError('config.fit.svi_max_restarts must be >= 0, got '
                      f'{_fit_value(f, "svi_max_restarts")}')
  if not 0 < _fit_value(f, 'svi_restart_lr_factor') < 1:
    raise ConfigError('config.fit.svi_restart_lr_factor must be in (0, 1), got '
                      f'{_fit_value(f, "svi_restart_lr_factor")}')
  if _fit_value(f, 'progress_seconds') < 0:
    raise ConfigError('config.fit.progress_seconds must be >= 0, got '
                      f'{_fit_value(f, "progress_seconds")}')
  if _fit_value(f, 'ppc_draws') < 1:
    raise ConfigError(f'config.fit.ppc_draws must be >= 1, got {_fit_value(f, "ppc_draws")}')


def check_data_for_fit(table: data_lib.TrialTable, fit_config) -> None:
  """Raises ValueError naming the config field the loaded data cannot satisfy."""
  folds = int(fit_config.cv_folds)
  if folds and len(table) < folds:
    raise ConfigError(f'config.fit.cv_folds={folds} needs at least {folds} trials (one per '
                      f'fold); {table.source or "the data"} has {len(table)} after selection. '
                      'Set --config.fit.cv_folds=0 to skip the model comparison.')


def _write_atomic(path, text: str) -> None:
  """Never a half-written file, even if the run dies here: locally a replace of a temporary
  file; on an object store (gs://...) one object write, atomic by itself."""
  if not workdir_lib.is_local(path):
    epath.Path(path).write_text(text)
    return
  tmp = os.fspath(path) + '.tmp'
  epath.Path(tmp).write_text(text)
  os.replace(tmp, path)


def _write_rows(path, columns, rows):
  text = io.StringIO(newline='')      # epath's cloud files take no newline=: built here.
  writer = csv.DictWriter(text, fieldnames=columns)
  writer.writeheader()
  for row in rows:
    writer.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in row.items()})
  _write_atomic(path, text.getvalue())


def _write_json(path, obj):
  _write_atomic(path, json.dumps(obj, indent=2, default=str))


def _read_json(path):
  try:
    return json.loads(epath.Path(path).read_text())
  except (OSError, ValueError):
    return None


def _join(folder: str, name: str) -> str:
  """`folder/name` as a string, for local and cloud folders alike."""
  return os.fspath(epath.Path(folder) / name)


def _save_figure(fig, path: str) -> None:
  """Writes fig to `path`, local or cloud, in the format its extension names (PNG without)."""
  with epath.Path(path).open('wb') as fh:
    fig.savefig(fh, format=epath.Path(path).suffix[1:] or 'png', dpi=110)


def _variant_name(spec: bns_lib.BNSSpec) -> str:
  return f'bns_{spec.dimension}_{spec.emission}'


def _bns_kwargs(fc, cv: bool = False):
  steps = int(fc.cv_svi_steps) if cv and fc.get('cv_svi_steps', 0) else int(fc.svi_steps)
  return dict(num_steps=steps, learning_rate=float(fc.svi_learning_rate), guide=fc.guide,
              max_restarts=int(_fit_value(fc, 'svi_max_restarts')),
              restart_lr_factor=float(_fit_value(fc, 'svi_restart_lr_factor')))


def _config_dict(config) -> dict:
  return json.loads(config.to_json_best_effort()) if hasattr(config, 'to_json_best_effort') \
      else dict(config)


# --------------------------------------------------------------------------------------------
# Cache keys
# --------------------------------------------------------------------------------------------


def file_sha256(path: str) -> str:
  """Hex SHA-256 of a file's bytes."""
  h = hashlib.sha256()
  with epath.Path(path).open('rb') as fh:
    for block in iter(lambda: fh.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def _sha(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def input_fingerprint(config, data_path: str) -> dict:
  """What the outputs depend on: data bytes, the resolved data block and the fit block.

  Returns dict(data_file, data_sha256, data (resolved block), fit, key, bns_key): `key` hashes
  everything, `bns_key` everything but the fit fields that do not touch the main BNS fit.
  """
  cfg = _config_dict(config)
  # The absolute path is part of the cache key; a cloud path (gs://...) is absolute already.
  data = dict(cfg['data'], path=os.path.abspath(data_path) if workdir_lib.is_local(data_path)
              else data_path)
  for name in data_lib.SELECTION_FIELDS:
    data[name] = data_lib.parse_selection(config.data.get(name), name)
  fit = dict(cfg['fit'])
  for name, value in FIT_DEFAULTS.items():
    fit.setdefault(name, value)
  out = dict(data_file=data['path'], data_sha256=file_sha256(data_path), data=data, fit=fit)
  out['key'] = _sha([out['data_sha256'], data, fit])
  out['bns_key'] = _sha([out['data_sha256'], data,
                         {k: v for k, v in fit.items() if k not in _NOT_BNS_FIELDS}])
  return out


def describe_changes(old: dict | None, new: dict) -> str:
  """Why the cache keyed by `old` (a previous `input_fingerprint`) does not serve `new`."""
  if not old or 'key' not in old:
    return 'no cache key in the previous summary (written by an older version)'
  reasons = []
  if old.get('data_sha256') != new['data_sha256']:
    reasons.append(f'data file {new["data_file"]} changed (sha256 '
                   f'{str(old.get("data_sha256"))[:12]} -> {new["data_sha256"][:12]})')
  for block in ('data', 'fit'):
    a, b = old.get(block, {}), new[block]
    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if fields:
      reasons.append(f'config.{block} changed: ' + ', '.join(
          f'{k} {a.get(k)!r} -> {b.get(k)!r}' for k in fields))
  return '; '.join(reasons) or 'the cache key changed'


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


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
  validate_config(config)
  fc = config.fit
  data_path = data_lib.resolve_path(config.data.path)
  data_lib.check_file(data_path)
  # The data are read (and every row checked) before anything is written: a bad file leaves
  # no empty behaviour/ folder behind.
  table = data_lib.load(config.data)
  check_data_for_fit(table, fc)
  out = _join(workdir, 'behaviour')
  epath.Path(out).mkdir(parents=True, exist_ok=True)
  cfg = _config_dict(config)
  inputs = input_fingerprint(config, data_path)
  summary_path = _join(out, 'summary.json')
  previous = _read_json(summary_path)
  if previous is not None:
    same = previous.get('inputs', {}).get('key') == inputs['key']
    if same and previous.get('complete'):
      progress.info(f'fit_behaviour: inputs unchanged (key {inputs["key"][:12]}); reusing '
                    f'{out}')
      return previous
    progress.info(f'fit_behaviour: refitting into {out}: ' + (
        'the previous run did not finish; stages it finished are reused' if same
        else describe_changes(previous.get('inputs'), inputs)))
  tick = progress.Throttle(float(_fit_value(fc, 'progress_seconds')))
  min_trials = int(_fit_value(fc, 'min_cell_trials'))
  key = jax.random.PRNGKey(int(fc.seed))
  key_fit, key_cv, key_plot = jax.random.split(key, 3)
  timings, warnings, paths, comparison = {}, [], {}, []
  stages = ['mixtures', 'BNS fit', 'posterior-predictive check', 'plots'] + (
      ['cross-validation'] if fc.cv_folds else [])

  def stage(i, text):
    tick(f'fit_behaviour [{i}/{len(stages)} {stages[i - 1]}]: {text}', force=True)

  def save_summary(complete):
    summary = dict(dir=out, config=cfg, inputs=inputs, complete=complete, timings=timings,
                   comparison=comparison, num_trials=len(table), warnings=warnings, **paths)
    _write_json(summary_path, summary)
    return summary

  def warn(message):
    warnings.append(message)
    progress.warning(message)

  # 1. Mixture models, every cell at once (reused when an earlier run finished them).
  t0 = time.time()
  fits = _mixture_stage(table, fc, inputs, out, lambda text: stage(1, text))
  for w in _small_cell_warnings(table, min_trials):
    warn(w)
  timings['mixture'] = time.time() - t0
  for w in _bound_warnings(fits):
    warn(w)
  paths['mixture_fits'] = _join(out, 'mixture_fits.csv')
  mixture.write_fits_csv(fits, paths['mixture_fits'], min_trials)
  save_summary(False)

  # 2. The main BNS fit (reused when its own key matches: a rerun after a later failure).
  spec = bns_lib.spec_from_config(fc)
  fit_dir = _join(out, surrogate.FIT_SUBDIR)
  cached = _read_json(_join(fit_dir, 'fit.json'))
  t0 = time.time()
  fit = None
  if cached and cached.get('info', {}).get('cache_key') == inputs['bns_key']:
    try:
      fit = bns_lib.load(fit_dir)
      stage(2, f'reusing the fit in {fit_dir} (same data and BNS settings)')
    except (OSError, ValueError, KeyError) as e:      # Arrays unreadable: fit again.
      warn(f'BNS fit: the saved fit in {fit_dir} cannot be read ({e}); fitting again')
  if fit is None:
    stage(2, f'{spec.dimension} / {spec.emission}, {fc.inference}, {len(table)} trials')
    if spec.subject_effects:
      per_subject = {s: int(np.sum(table.subject == s)) for s in table.subjects()}
      few = {s: n for s, n in per_subject.items() if n < min_trials}
      if few:
        warn(f'subject_effects: subjects {few} have fewer than {min_trials} trials; their '
             'guess rate and precision are mostly the prior')
    fit = bns_lib.fit(key_fit, table, spec, inference=fc.inference,
                      num_samples=int(fc.num_posterior_samples),
                      num_warmup=int(fc.nuts_warmup), tick=tick, **_bns_kwargs(fc))
    fit.info['cache_key'] = inputs['bns_key']
    restarts = [a for a in fit.info.get('svi_attempts', []) if a['diverged']]
    if restarts:
      warn(f'BNS fit: SVI diverged {len(restarts)} time(s) ({restarts[0]["diverged"]}); '
           f'recovered at learning rate {fit.info["learning_rate"]:.3g}')
    bns_lib.save(fit, fit_dir, config=cfg)
  timings['bns'] = time.time() - t0
  paths['bns_fit'] = fit_dir
  paths['swap_function'] = _join(out, 'swap_function.csv')
  _write_rows(paths['swap_function'], SWAP_FILE_COLUMNS, _swap_rows(table, fit, min_trials))
  save_summary(False)

  # 3. Posterior-predictive check of the cue-similarity effect.
  stage(3, f'{int(_fit_value(fc, "ppc_draws"))} replicate data sets')
  t0 = time.time()
  ppc = nontarget_proximity_check(jax.random.fold_in(key_plot, 2), table, fit,
                                  num_draws=int(_fit_value(fc, 'ppc_draws')),
                                  min_count=min_trials)
  paths['ppc'] = _join(out, 'ppc_nontarget_proximity.csv')
  _write_rows(paths['ppc'], PPC_COLUMNS, ppc)
  outside = [r for r in ppc if 'outside' in r['warning']]
  if outside:
    warn('posterior-predictive check: the data fall outside the model\'s 90% band in '
         + ', '.join(f'set size {r["set_size"]} at cue distance {r["cue_distance"]:.2f} '
                     f'(data {r["data_rate"]:.3f}, model {r["model_lower"]:.3f}-'
                     f'{r["model_upper"]:.3f})' for r in outside[:6])
         + ' (see ppc_nontarget_proximity.csv)')
  timings['ppc'] = time.time() - t0
  save_summary(False)

  # 4. Plots.
  paths['plots'] = []
  t0 = time.time()
  if _fit_value(fc, 'plots'):
    stage(4, 'posterior-predictive check, error histograms, swap probability')
    paths['plots'] = [
        plot_nontarget_proximity(ppc, _join(out, 'ppc_nontarget_proximity.png')),
        plot_error_histograms(table, fits, fit, _join(out, 'error_histograms.png'),
                              key_plot),
        plot_swap_probability(table, fit, _join(out, 'swap_probability.png'),
                              jax.random.fold_in(key_plot, 1))]
  else:
    stage(4, 'skipped (config.fit.plots=False)')
  timings['plots'] = time.time() - t0
  save_summary(False)

  # 5. Model comparison by k-fold held-out log predictive density, one model at a time.
  paths['model_comparison'] = _join(out, 'model_comparison.csv')
  _write_rows(paths['model_comparison'], COMPARISON_COLUMNS, [])
  if fc.cv_folds:
    t0 = time.time()
    comparison[:] = _cross_validation_stage(table, fc, spec, key_cv, inputs, out, tick,
                                            lambda text: stage(5, text), warn, min_trials,
                                            paths['model_comparison'])
    timings['cross_validation'] = time.time() - t0
  summary = save_summary(True)
  stage(len(stages), f'done; results in {out}')
  return summary


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
  folds = bns_lib.make_folds(key_cv, len(table), int(fc.cv_folds))
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
      res = bns_lib.cross_validate_folds(jax.random.fold_in(key_cv, i), table, v, folds,
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


# --------------------------------------------------------------------------------------------
# Posterior-predictive check: responses near a non-target, by cue distance
# --------------------------------------------------------------------------------------------

NEAR_NONTARGET, FAR_FROM_TARGET = 0.4, 0.8


def nontarget_proximity(table: data_lib.TrialTable, responses, near: float = NEAR_NONTARGET,
                        far: float = FAR_FROM_TARGET) -> np.ndarray:
  """Per non-target: is the response within `near` rad of it and more than `far` from the target?

  Args:
    table: T trials.
    responses: (..., T) responses (the data's, or posterior-predictive replicates).

  Returns:
    (..., T, J) bool over the table's non-target slots (False at padding).
  """
  y = np.asarray(responses, np.float64)
  _, _, nt_report, mask = table.nontargets()
  to_target = np.abs(circular.wrap(y - table.target_report()))                 # (..., T)
  to_item = np.abs(circular.wrap(y[..., None] - nt_report))                     # (..., T, J)
  return (to_item < near) & (to_target > far)[..., None] & mask


def nontarget_proximity_check(key, table: data_lib.TrialTable, fit: bns_lib.BNSFit,
                              num_draws: int = 200, band: float = 0.9,
                              min_count: int = 30) -> list[dict]:
  """Posterior-predictive check of the cue-similarity effect, rows of `PPC_COLUMNS`.

  The statistic, per set size and |cue distance| of a non-target to the target (exact values
  when few, else 8 bins): the share of non-targets whose response lies within 0.4 rad of them
  and more than 0.8 rad from the target (`nontarget_proximity`). It is computed on the data
  and on `num_draws` replicate data sets (`bns.predictive_responses`: same displays, subjects
  and set sizes, one posterior draw per replicate); the model's mean and central `band` over
  replicates, and `ppp` = P(replicate >= data) (near 0 or 1: the model misses the data).
  `warning` says when the data fall outside the band or the bin has fewer than `min_count`
  non-targets.
  """
  rows = []
  sizes = [n for n in table.set_sizes() if n > 1]
  lo_q, hi_q = (1 - band) / 2, 1 - (1 - band) / 2
  for i, n in enumerate(sizes):
    sub = table.select(set_sizes=[n])
    dc, _, _, mask = sub.nontargets()
    bins, centres = _distance_bins(np.abs(dc[mask]))
    count = np.bincount(bins, minlength=len(centres))
    data_hits = nontarget_proximity(sub, sub.response)[mask]
    data_rate = np.bincount(bins, weights=data_hits, minlength=len(centres)) / count
    reps = bns_lib.predictive_responses(jax.random.fold_in(key, i), fit, sub, num_draws)
    hits = nontarget_proximity(sub, reps)[:, mask]                              # (R, M)
    model = np.stack([np.bincount(bins, weights=h, minlength=len(centres)) for h in hits]
                     ) / count                                                   # (R, B)
    lower, upper = np.quantile(model, lo_q, 0), np.quantile(model, hi_q, 0)
    for b, centre in enumerate(centres):
      notes = []
      if not lower[b] <= data_rate[b] <= upper[b]:
        notes.append(f'data outside the model\'s {band:.0%} band')
      if count[b] < min_count:
        notes.append(f'only {count[b]} non-targets (< {min_count})')
      rows.append(dict(set_size=n, cue_distance=float(centre), n_nontargets=int(count[b]),
                       n=len(sub), data_rate=float(data_rate[b]),
                       data_se=float(np.sqrt(data_rate[b] * (1 - data_rate[b]) / count[b])),
                       model_mean=float(model[:, b].mean()), model_lower=float(lower[b]),
                       model_upper=float(upper[b]),
                       ppp=float(np.mean(model[:, b] >= data_rate[b])),
                       warning='; '.join(notes)))
  return rows


def plot_nontarget_proximity(rows: list[dict], path: str) -> str:
  """The check of `nontarget_proximity_check`: data (with binomial SE) over the model's band."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  sizes = sorted({r['set_size'] for r in rows})
  fig, axes = plt.subplots(1, max(len(sizes), 1), figsize=(3.4 * max(len(sizes), 1), 3.0),
                           squeeze=False, sharey=True)
  for ax, n in zip(axes[0], sizes):
    rs = [r for r in rows if r['set_size'] == n]
    x = np.array([r['cue_distance'] for r in rs])
    ax.fill_between(x, [r['model_lower'] for r in rs], [r['model_upper'] for r in rs],
                    color='C0', alpha=0.3, label='BNS predictive, 90%')
    ax.plot(x, [r['model_mean'] for r in rs], 'C0-')
    ax.errorbar(x, [r['data_rate'] for r in rs], yerr=[r['data_se'] for r in rs], fmt='ks',
                ms=4, label='data (± SE)')
    ax.set_title(f'set size {n}')
    ax.set_xlabel('|cue distance| (rad)')
    ax.set_ylim(bottom=0)
  axes[0, 0].set_ylabel(f'P(response < {NEAR_NONTARGET} rad from non-target,\n'
                        f'> {FAR_FROM_TARGET} rad from target)')
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  _save_figure(fig, path)
  plt.close(fig)
  return path


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _error_density_table(table: data_lib.TrialTable, grid: np.ndarray) -> data_lib.TrialTable:
  """Every trial repeated with response r_k + e for each grid error e (T * G rows)."""
  g = len(grid)
  rep = table.take(np.repeat(np.arange(len(table)), g))
  response = circular.wrap(rep.target_report() + np.tile(grid, len(table)))
  return data_lib.TrialTable(cue=rep.cue, report=rep.report, cued=rep.cued,
                             set_size=rep.set_size, response=response, subject=rep.subject,
                             condition=rep.condition, source=rep.source)


def plot_error_histograms(table, mixture_fits, fit: bns_lib.BNSFit, path: str, key,
                          max_trials: int = 300, num_draws: int = 50) -> str:
  """Histograms of response error per set size, with each model's predictive error density.

  A model's curve is its density of y - r_k averaged over the set size's trials (a random
  subset of `max_trials`), so it accounts for the displays' non-target positions; BNS uses
  the posterior predictive (mean over `num_draws` draws).
  """
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  sizes = table.set_sizes()
  grid = np.linspace(-np.pi, np.pi, 121)
  fig, axes = plt.subplots(1, len(sizes), figsize=(3.6 * len(sizes), 3.2), squeeze=False)
  rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
  thin = fit.num_samples > num_draws
  draws = rng.choice(fit.num_samples, num_draws, replace=False) if thin else slice(None)
  small = bns_lib.BNSFit(spec=fit.spec, labels=fit.labels,
                         samples={k: v[draws] for k, v in fit.samples.items()}, info=fit.info)
  for ax, n in zip(axes[0], sizes):
    sub = table.select(set_sizes=[n])
    ax.hist(sub.error(), bins=40, range=(-np.pi, np.pi), density=True, color='0.8',
            label=f'data (T={len(sub)})')
    pick = rng.choice(len(sub), min(max_trials, len(sub)), replace=False)
    expanded = _error_density_table(sub.take(pick), grid)
    for fits in mixture_fits:
      dens = np.exp(mixture.trial_log_density(fits, expanded)).reshape(len(pick), -1).mean(0)
      ax.plot(grid, dens, label=fits.model.replace('_', '-'))
    ll = np.asarray(small.trial_log_likelihood(expanded))          # (S, T * G)
    dens = np.exp(ll).mean(0).reshape(len(pick), -1).mean(0)
    ax.plot(grid, dens, 'k--', label=f'BNS ({fit.spec.dimension})')
    ax.set_title(f'set size {n}')
    ax.set_xlabel('error (rad)')
  axes[0, 0].set_ylabel('density')
  axes[0, -1].legend(fontsize=7)
  fig.tight_layout()
  _save_figure(fig, path)
  plt.close(fig)
  return path


def _distance_bins(distance: np.ndarray, max_unique: int = 12, num_bins: int = 8):
  """Bin index of each |cue distance| and the bin centres: exact values when they are few.

  Few distinct values (a grid of locations; values within `circular.EDGE_TOLERANCE` of each
  other are one value, `circular.distinct_values`, so angles saved to 6 decimals still give
  one bin per grid distance): one bin per value. Otherwise `num_bins` equal bins over [0, pi]
  by `circular.bin_index`. Bins holding no distance are dropped, so that no rate downstream
  divides by an empty count.

  Returns:
    bins: (M,) int bin of each distance, in [0, B).
    centres: (B,) radians, each bin's value (grid) or centre (equal bins).
  """
  values, index = circular.distinct_values(distance)
  if len(values) <= max_unique:
    return index, values
  edges = np.linspace(0, np.pi, num_bins + 1)
  bins = np.asarray(circular.bin_index(distance, edges))
  used, bins = np.unique(bins, return_inverse=True)
  return bins.reshape(np.shape(distance)), ((edges[1:] + edges[:-1]) / 2)[used]


def swap_probability_by_distance(table, fit: bns_lib.BNSFit, set_size: int, key,
                                 band: float = 0.9, responses_per_trial: int = 20):
  """Per-non-target swap statistics against |cue distance| for one set size.

  Returns dict: centres (B,); model_mean, model_lower, model_upper (B,): P(report this
  non-target) under the posterior (mean, central band over draws), averaged over the data's
  non-targets in each bin; empirical (B,), empirical_se (B,): fraction of trials whose response
  is nearest (circularly) to that non-target; predicted_nearest (B,): the same fraction under
  posterior-predictive responses on the same displays; count (B,).
  """
  sub = table.select(set_sizes=[set_size])
  d, _ = bns_lib.make_data(fit.spec, sub, fit.labels)
  params = {k: jnp.asarray(v) for k, v in fit.samples.items()}
  w = np.asarray(jax.lax.map(lambda p: jnp.exp(bns_lib.trial_log_weights(p, d)), params,
                             batch_size=32))[..., 2:]                          # (S, T, J)
  dc, _, nt_report, mask = sub.nontargets()
  bins, centres = _distance_bins(np.abs(dc[mask]))
  # Nearest item to the response (`circular.nearest_item`, the target winning ties): slot 0 the
  # target, slot 1 + j non-target j.
  items = np.concatenate([sub.target_report()[:, None], np.where(mask, nt_report, 0.0)], 1)
  exists = np.concatenate([np.ones((len(sub), 1), bool), mask], 1)

  def nearest_rate(resp):
    nearest = np.asarray(circular.nearest_item(resp, items[:, None, :], preferred=0,
                                               mask=exists[:, None, :]))          # (T, R)
    return (nearest[:, None, :] == 1 + np.arange(mask.shape[1])[None, :, None]).mean(-1)
  empirical = nearest_rate(sub.response[:, None])
  model_resp = surrogate.from_fit(fit, set_size).sample_responses(key, sub.displays(),
                                                                  responses_per_trial)
  predicted = nearest_rate(np.asarray(model_resp, np.float64))
  lo_q, hi_q = (1 - band) / 2, 1 - (1 - band) / 2
  per_draw = np.stack([np.bincount(bins, weights=wd[mask], minlength=len(centres))
                       for wd in w]) / np.bincount(bins, minlength=len(centres))
  count = np.bincount(bins, minlength=len(centres))
  emp = np.bincount(bins, weights=empirical[mask], minlength=len(centres)) / count
  return dict(centres=centres, model_mean=per_draw.mean(0),
              model_lower=np.quantile(per_draw, lo_q, 0),
              model_upper=np.quantile(per_draw, hi_q, 0), empirical=emp,
              empirical_se=np.sqrt(emp * (1 - emp) / count),
              predicted_nearest=np.bincount(bins, weights=predicted[mask],
                                            minlength=len(centres)) / count, count=count)


def plot_swap_probability(table, fit: bns_lib.BNSFit, path: str, key) -> str:
  """Swap probability against cue distance per set size (see `swap_probability_by_distance`)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  sizes = [n for n in table.set_sizes() if n > 1]
  fig, axes = plt.subplots(1, max(len(sizes), 1), figsize=(3.8 * max(len(sizes), 1), 3.2),
                           squeeze=False)
  for i, n in enumerate(sizes):
    ax = axes[0, i]
    s = swap_probability_by_distance(table, fit, n, jax.random.fold_in(key, n))
    x = s['centres']
    ax.fill_between(x, s['model_lower'], s['model_upper'], alpha=0.3, color='C0',
                    label='BNS P(swap to item), 90%')
    ax.plot(x, s['model_mean'], 'C0-o', ms=3)
    ax.plot(x, s['predicted_nearest'], 'C1--', label='BNS: nearest non-target')
    ax.errorbar(x, s['empirical'], yerr=s['empirical_se'], fmt='ks', ms=4,
                label='data: nearest non-target')
    ax.set_title(f'set size {n}')
    ax.set_xlabel('|cue distance| (rad)')
    ax.set_ylim(bottom=0)
  axes[0, 0].set_ylabel('probability per non-target')
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  _save_figure(fig, path)
  plt.close(fig)
  return path
