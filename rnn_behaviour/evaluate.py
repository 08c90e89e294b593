"""Judging a trained network against the behaviour that generated its training data (METHOD 7).

On held-out displays, S samples per display from the network and two independent sets of S
from the generating model. A response is classed by its nearest item (circular distance of the
report feature); "swap rate" is the fraction of responses nearest a non-target.
"""

from __future__ import annotations

import io
import json

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import checkpoints
from rnn_behaviour import circular
from rnn_behaviour import files
from rnn_behaviour import progress
from rnn_behaviour import run_record
from rnn_behaviour import task as task_lib
from rnn_behaviour import train_step
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.behaviour import bns
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import mixture
from rnn_behaviour.behaviour import parametric
from rnn_behaviour.behaviour import source
from rnn_behaviour.behaviour import surrogate as surrogate_lib

EVAL_DIR = 'eval'
SWAP_RATE_CSV = 'swap_rate_by_cue_distance.csv'
SWAP_RATE_COLUMNS = ('bin_centre_rad', 'bin_lower_rad', 'bin_upper_rad', 'network', 'truth',
                     'model_weight', 'pairs')
SUMMARY_CSV = 'summary.csv'
SUMMARY_JSON = 'summary.json'
STAGES = ('load the trained network', 'sample the network', 'sample the generating model',
          'fit mixtures', 'held-out log-likelihood', 'fit BNS swap functions',
          'write results and figures')
DISPLAYS_PER_CHUNK = 64   # Displays a sampling call draws at once: bounds the memory used.


def item_frequencies(responses, displays: task_lib.Displays):
  """(K, N) fraction of each display's responses nearest each item."""
  nearest = task_lib.nearest_item(responses, displays)
  return jnp.mean(jax.nn.one_hot(nearest, displays.num_items), axis=1)


def cue_bin_edges(num_bins: int, min_separation: float):
  """Equal-width bins of cue distance over [min_separation, pi]."""
  return np.linspace(min_separation, np.pi, num_bins + 1)


def swap_rate_by_cue_distance(frequencies, displays: task_lib.Displays, edges):
  """Mean rate of reporting a non-target, by that non-target's cue distance to the target.

  Args:
    frequencies: (K, N) per-item rates (from `item_frequencies` or mixture weights).
    displays: the K displays.
    edges: (B + 1,) bin edges in radians, binned by `circular.bin_index` (left-closed bins,
      the last closed on the right; distances outside are clipped into the end bins).

  Returns:
    rates (B,) (NaN for an empty bin) and counts (B,) of (display, non-target) pairs.
  """
  distance = np.asarray(task_lib.cue_distances(displays))
  mask = np.asarray(task_lib.nontarget_mask(displays))
  bins = circular.bin_index(distance, edges)
  frequencies = np.asarray(frequencies)
  rates, counts = [], []
  for b in range(len(edges) - 1):
    selected = mask & (bins == b)
    counts.append(int(selected.sum()))
    rates.append(float(frequencies[selected].mean()) if selected.any() else float('nan'))
  return np.array(rates), np.array(counts)


def circular_energy_distance(x, y):
  """Energy distance between two samples on the circle, per display, with geodesic distance.

  E|X - Y| - (E|X - X'| + E|Y - Y'|) / 2 as V-statistics (all pairs). The circle's geodesic
  metric is of negative type, so this is >= 0, exactly 0 for identical samples, and its
  population value is 0 only when the distributions agree. Two independent draws of one
  distribution give a small positive value: the noise floor it must be compared with.

  Args:
    x, y: (K, S) angles.

  Returns:
    (K,) distances.
  """
  def mean_pairwise(a, b):
    return jnp.mean(circular.circular_distance(a[:, :, None], b[:, None, :]), axis=(1, 2))

  return mean_pairwise(x, y) - 0.5 * (mean_pairwise(x, x) + mean_pairwise(y, y))


def kde_log_density(samples, observed, concentration: float):
  """Log density of observations under a von Mises kernel density of samples, (K,).

  p_k(y) = mean_s vM(y; samples_ks, concentration), a proper density on the circle for each
  display k, evaluated at observed_k.

  Args:
    samples: (K, S) angles, e.g. a network's responses on K displays.
    observed: (K,) angles, one per display.
    concentration: the kernel's kappa (larger: narrower).
  """
  log_kernel = circular.log_von_mises(observed[:, None], samples, concentration)
  return jax.scipy.special.logsumexp(log_kernel, axis=1) - jnp.log(samples.shape[1])


def kde_log_likelihood(samples, observed, concentration: float) -> float:
  """Mean over displays of `kde_log_density`: held-out log-likelihood per trial (nats)."""
  return float(jnp.mean(kde_log_density(samples, observed, concentration)))


def mixture_summary(displays: task_lib.Displays, responses) -> dict:
  """Three-component mixture (Bays et al. 2009) fitted to all responses on the displays."""
  row = mixture.fit(data_lib.from_displays(displays, responses), 'three_component').rows()[0]
  return {k: row[k] for k in ('kappa', 'sd', 'p_t', 'p_n', 'p_u')}


def fit_swap_function(key, displays: task_lib.Displays, responses, num_steps: int,
                      min_distance: float = 0.0, num_points: int = 61) -> dict:
  """BNS over cue distance fitted (SVI) to responses (K, S) on displays: the swap function.

  Returns the posterior mean and 90% band of the swap logit f(d) on a grid of cue distances in
  [min_distance, pi] (displays never hold items closer than their minimum separation, so f is
  not identified below it), as lists under 'distance', 'mean', 'lower', 'upper'.
  """
  table = data_lib.from_displays(displays, responses)
  fit = bns.fit(key, table, bns.BNSSpec(dimension='cue'), num_steps=num_steps,
                num_samples=200)
  return swap_function_of(fit, displays.num_items, min_distance, num_points)


def swap_function_of(fit, set_size: int, min_distance: float = 0.0,
                     num_points: int = 61) -> dict:
  """A BNS fit's swap logit over cue distance for one set size (see `fit_swap_function`)."""
  rows = [r for r in bns.swap_function_grid(fit, num_points)
          if r['set_size'] == set_size and r['dimension'] == 'cue'
          and r['distance'] >= min_distance - circular.EDGE_TOLERANCE]
  if not rows:
    raise ValueError(f'the BNS fit has no cue-distance swap function for set size {set_size}')
  return {'distance': [r['distance'] for r in rows], 'mean': [r['logit_mean'] for r in rows],
          'lower': [r['logit_lower'] for r in rows], 'upper': [r['logit_upper'] for r in rows]}


def judge_swap_function(config, workdir: str, displays: task_lib.Displays, network,
                        surrogate) -> dict:
  """BNS fitted to the network's and the generating model's responses (METHOD 7).

  Fits BNS over cue distance to the network's responses (K, S) and to the generating model's on
  the same displays (at most `config.eval.bns_samples_per_display` each), adds the generating
  swap function itself ('exact' for a parametric target; 'data_fit', the data fit's own
  posterior, for a BNS target), and returns the curves with `logit_error`: the mean
  |network - surrogate| of the posterior-mean logit over the grid.
  """
  c = config.eval
  s = min(c.bns_samples_per_display, network.shape[1])
  key_net, key_sur = jax.random.split(jax.random.fold_in(jax.random.key(c.seed), 2))
  min_distance = config.task.min_separation_cue
  curves = {}
  for i, (name, key, responses) in enumerate((('network', key_net, network),
                                              ('surrogate', key_sur, surrogate))):
    progress.say(f'  BNS fit {i + 1}/2: the {name}\'s responses, {displays.num_displays} '
                 f'displays x {s}, {c.bns_svi_steps} SVI steps')
    curves[name] = fit_swap_function(key, displays, responses[:, :s], c.bns_svi_steps,
                                     min_distance)
  distance = np.asarray(curves['network']['distance'])
  if config.behaviour.source == 'parametric' and config.behaviour.swap_kind != 'none':
    exact = np.asarray(parametric.from_config(config.behaviour).swap_logit(distance)).tolist()
    curves['exact'] = {'distance': distance.tolist(), 'mean': exact, 'lower': exact,
                       'upper': exact}
  fit_dir = source.target_fit_dir(config, workdir)
  if fit_dir:
    curves['data_fit'] = swap_function_of(surrogate_lib.load_fit(fit_dir), displays.num_items,
                                          min_distance)
  logit_error = np.mean(np.abs(np.subtract(curves['network']['mean'],
                                           curves['surrogate']['mean'])))
  logging.info('BNS swap function fitted to the network: mean |logit error| %.3f.', logit_error)
  return dict(curves, samples_per_display=s, logit_error=float(logit_error))


def add_swap_function_judgement(config, workdir: str) -> dict:
  """`judge_swap_function` on a finished evaluation (`<workdir>/eval/samples.npz`), added to its
  `summary.json` and drawn in `swap_function.png`: for runs evaluated without it. The folder is
  rewritten whole (`workdir.whole_folder`), so an interruption leaves the evaluation as it was."""
  from rnn_behaviour import plots  # pylint: disable=g-import-not-at-top
  final = eval_dir(workdir)
  summary = read_summary(workdir)
  if summary is None:
    raise FileNotFoundError(f'{final} holds no finished evaluation (no '
                            f'{workdir_lib.COMPLETE_MARKER}); run --mode=evaluate first')
  with (final / 'samples.npz').open('rb') as f:
    arrays = dict(np.load(io.BytesIO(f.read())))
  displays = task_lib.Displays(cue=jnp.asarray(arrays['cue']),
                               report=jnp.asarray(arrays['report']),
                               cued=jnp.asarray(arrays['cued']))
  result = judge_swap_function(config, workdir, displays, arrays['network'],
                               arrays['surrogate'])
  summary['bns_swap_function'] = result
  with workdir_lib.whole_folder(final, keep_existing=True) as out:
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    write_tables(summary, out)
    plots.swap_function(result, out / 'swap_function.png')
  return result


def heldout_observations(config, key, target_model, displays):
  """One held-out response per display to score densities with: real trials of the config's
  data set (set size = config.task.num_items) when it names one, else a fresh surrogate draw.

  Returns (displays, observed (K,), description).
  """
  if 'data' in config and config.data.get('path'):
    table = data_lib.load(config.data)
    keep = np.flatnonzero(table.set_size == config.task.num_items)
    if keep.size:
      table = table.take(keep)
      real = table.displays()
      return real, jnp.asarray(table.response, jnp.float32), f'{keep.size} real trials'
  return displays, target_model.sample_responses(key, displays, 1)[:, 0], 'surrogate draws'


def summarise(displays: task_lib.Displays, network, surrogate, surrogate_reference, weights,
              edges) -> dict:
  """The evaluation summary (a JSON-able dict) from samples of the network and the model."""
  net_freq = item_frequencies(network, displays)
  true_freq = item_frequencies(surrogate, displays)
  item_weights = weights[:, 1:]
  mask = task_lib.nontarget_mask(displays)
  net_bins, counts = swap_rate_by_cue_distance(net_freq, displays, edges)
  true_bins, _ = swap_rate_by_cue_distance(true_freq, displays, edges)
  model_bins, _ = swap_rate_by_cue_distance(item_weights, displays, edges)
  swap = lambda f: float(jnp.mean(jnp.sum(jnp.where(mask, f, 0.0), axis=1)))
  net_swap, true_swap = swap(net_freq), swap(true_freq)
  target = displays.cued_report()[:, None]
  errors_net = circular.wrap(network - target)
  errors_true = circular.wrap(surrogate - target)
  distance = circular_energy_distance(network, surrogate)
  floor = circular_energy_distance(surrogate_reference, surrogate)
  # Displays whose truth has a strong second mode: does the network reproduce it?
  strong = np.asarray(jnp.max(jnp.where(mask, item_weights, 0.0), axis=1) >= 0.2)
  valid = ~np.isnan(true_bins)
  return {
      'num_displays': int(displays.num_displays),
      'samples_per_display': int(network.shape[1]),
      'cue_distance_bins': {
          'edges': edges.tolist(),
          'centres': (0.5 * (edges[1:] + edges[:-1])).tolist(),
          'pairs': counts.tolist()},
      'swap_rate_by_cue_distance': {
          'network': net_bins.tolist(), 'truth': true_bins.tolist(),
          'model_weight': model_bins.tolist(),
          'max_abs_error': float(np.max(np.abs(net_bins - true_bins)[valid]))},
      'swap_rate': {
          'network': net_swap, 'truth': true_swap,
          'model_weight': float(jnp.mean(jnp.sum(jnp.where(mask, item_weights, 0.0), 1))),
          'relative_error': abs(net_swap - true_swap) / max(true_swap, 1e-12)},
      'guess_weight_model': float(jnp.mean(weights[:, 0])),
      'circular_sd_around_target': {
          'network': float(circular.circular_sd(errors_net.ravel())),
          'truth': float(circular.circular_sd(errors_true.ravel()))},
      'strong_swap_displays': {
          'count': int(strong.sum()),
          'network_nontarget_rate': float(np.asarray(jnp.sum(jnp.where(mask, net_freq, 0), 1))
                                          [strong].mean()) if strong.any() else float('nan'),
          'truth_nontarget_rate': float(np.asarray(jnp.sum(jnp.where(mask, true_freq, 0), 1))
                                        [strong].mean()) if strong.any() else float('nan')},
      'energy_distance': {
          'network_vs_surrogate': float(jnp.mean(distance)),
          'noise_floor': float(jnp.mean(floor)),
          'ratio_to_floor': float(jnp.mean(distance) / jnp.maximum(jnp.mean(floor), 1e-12)),
          'per_display_above_floor_fraction': float(jnp.mean(distance > floor))},
  }


def flatten_scalars(tree: dict, prefix: str = '') -> dict:
  """The scalar leaves (numbers, strings, booleans) of a nested dict, keyed 'a.b.c'; lists
  (curves, bin values) are left out."""
  flat = {}
  for name, value in tree.items():
    key = f'{prefix}{name}'
    if isinstance(value, dict):
      flat.update(flatten_scalars(value, key + '.'))
    elif isinstance(value, (bool, int, float, str, np.number)):
      flat[key] = value
  return flat


def swap_rate_rows(summary: dict) -> list[dict]:
  """One row per cue-distance bin (radians): the bin, network, truth and model-weight rates,
  and the number of (display, non-target) pairs in it (see `summarise`)."""
  bins, rates = summary['cue_distance_bins'], summary['swap_rate_by_cue_distance']
  edges = bins['edges']
  return [dict(bin_centre_rad=centre, bin_lower_rad=edges[b], bin_upper_rad=edges[b + 1],
               network=rates['network'][b], truth=rates['truth'][b],
               model_weight=rates['model_weight'][b], pairs=bins['pairs'][b])
          for b, centre in enumerate(bins['centres'])]


def write_tables(summary: dict, out: str) -> list[str]:
  """The judgement as flat CSV in `out`: `swap_rate_by_cue_distance.csv` (a row per bin) and
  `summary.csv` (one row: every scalar of the summary, columns named by their path)."""
  flat = flatten_scalars(summary)
  out = epath.Path(out)
  return [files.write_csv(out / SWAP_RATE_CSV, SWAP_RATE_COLUMNS, swap_rate_rows(summary)),
          files.write_csv(out / SUMMARY_CSV, list(flat), [flat])]


def eval_dir(workdir, member: int | None = None) -> epath.Path:
  """Where an evaluation is written: <workdir>/eval, or eval/member_<i> for an ensemble's."""
  out = epath.Path(workdir) / EVAL_DIR
  return out if member is None else out / f'member_{member}'


def read_summary(workdir, member: int | None = None) -> dict | None:
  """The `summary.json` of a finished evaluation, or None when there is none.

  An evaluation folder is written whole (`workdir.whole_folder`); one without its
  completeness marker (interrupted, or written before the marker existed) counts as absent.
  """
  out = eval_dir(workdir, member)
  if not workdir_lib.is_complete(out):
    return None
  return json.loads((out / SUMMARY_JSON).read_text())


def evaluate(config, workdir: str, member: int | None = None):
  """Samples the trained network and the generating model on held-out displays, and writes
  `<workdir>/eval/`: `samples.npz`, `summary.json`, `summary.csv`,
  `swap_rate_by_cue_distance.csv`, PNG figures and the completeness marker; the folder appears
  whole or not at all (read it with `read_summary`). Reports each stage as it runs.

  For a seed ensemble (config.train.ensemble_size = E > 1) every member samples the same
  held-out displays in one vmapped call, and each is judged and written to `eval/member_<i>/`;
  the list of their summaries is returned. `member` evaluates one member only.
  """
  num_members = train_step.ensemble_size(config)
  if num_members == 1:
    return _evaluate(config, workdir, [None])[0]
  if member is not None:
    return _evaluate(config, workdir, [member])[0]
  return _evaluate(config, workdir, list(range(num_members)))


def _evaluate(config, workdir: str, members: list) -> list[dict]:
  """The evaluation of `members` ([None]: a single run), sampled together, judged one by one."""
  c = config.eval
  stages = progress.Stages('evaluate', [name for name in STAGES if c.bns_svi_steps > 0
                                        or name != 'fit BNS swap functions'])
  with stages.stage('load the trained network'):
    sample, state = checkpoints.load_trained(config, workdir)
    if members != [None]:
      state = jax.tree_util.tree_map(lambda a: a[np.asarray(members)], state)
    behaviour_model = source.target_model_from_config(config, workdir)
  key_displays, key_network, key_surrogate, key_reference = jax.random.split(
      jax.random.key(c.seed), 4)
  key_heldout, key_heldout_net, key_heldout_sur = jax.random.split(
      jax.random.fold_in(jax.random.key(c.seed), 1), 3)
  displays = task_lib.displays_from_config(key_displays, c.num_displays, config.task)
  held_displays, observed, description = heldout_observations(
      config, key_heldout, behaviour_model, displays)
  with stages.stage('sample the network') as what:
    drawn = [sample.chunked(state.variables, d, key, c.samples_per_display, DISPLAYS_PER_CHUNK,
                            members=members != [None], what=what)
             for d, key in ((displays, key_network), (held_displays, key_heldout_net))]
  summaries = []
  for i, member in enumerate(members):
    if member is not None:
      progress.say(f'Evaluating ensemble member {member + 1} of '
                   f'{train_step.ensemble_size(config)} '
                   f'(seed {train_step.member_seeds(config)[member]}).')
    network = drawn[0] if member is None else drawn[0][i]
    held_network = drawn[1] if member is None else drawn[1][i]
    steps = int(np.asarray(state.step).reshape(-1)[i])
    summaries.append(_judge_member(
        config, workdir, member, stages, behaviour_model, steps, displays, network,
        (key_surrogate, key_reference, key_heldout_sur),
        (held_displays, observed, description, held_network)))
  return summaries


def _judge_member(config, workdir: str, member: int | None, stages, behaviour_model,
                  trained_steps: int, displays, network_responses, keys, heldout) -> dict:
  """One network's responses against the generating model's: the summary, written to its
  folder (`eval_dir`)."""
  from rnn_behaviour import plots  # Matplotlib only where figures are made.

  c = config.eval
  key_surrogate, key_reference, key_heldout_sur = keys
  held_displays, observed, description, held_network = heldout
  with stages.stage('sample the generating model'):
    sample = jax.jit(behaviour_model.sample_responses, static_argnums=2)
    surrogate = sample(key_surrogate, displays, c.samples_per_display)
    reference = sample(key_reference, displays, c.samples_per_display)
    weights = behaviour_model.mixture_weights(displays)
    edges = cue_bin_edges(c.num_cue_bins, config.task.min_separation_cue)
    summary = summarise(displays, network_responses, surrogate, reference, weights, edges)
  summary['trained_steps'] = trained_steps
  if member is not None:
    summary['member'] = {'index': member, 'seed': train_step.member_seeds(config)[member]}
  with stages.stage('fit mixtures'):
    summary['mixture_fit'] = {'network': mixture_summary(displays, network_responses),
                              'truth': mixture_summary(displays, surrogate)}
  summary['guess_rate'] = {name: fit['p_u'] for name, fit in summary['mixture_fit'].items()}
  with stages.stage('held-out log-likelihood'):
    held_model = sample(key_heldout_sur, held_displays, c.samples_per_display)
    summary['heldout_loglik'] = {
        'observations': description, 'kde_concentration': c.kde_concentration,
        'network': kde_log_likelihood(held_network, observed, c.kde_concentration),
        'behaviour_model': kde_log_likelihood(held_model, observed, c.kde_concentration)}
  if c.bns_svi_steps > 0:
    with stages.stage('fit BNS swap functions'):
      summary['bns_swap_function'] = judge_swap_function(config, workdir, displays,
                                                         np.asarray(network_responses),
                                                         np.asarray(surrogate))
  # Every file of the evaluation in one folder that appears whole or not at all: a kill while
  # writing leaves the previous evaluation (or none), never a mix of two.
  final = eval_dir(workdir, member)
  with stages.stage('write results and figures'), workdir_lib.whole_folder(final) as out:
    arrays = dict(cue=displays.cue, report=displays.report, cued=displays.cued,
                  network=network_responses, surrogate=surrogate, weights=weights)
    with (out / 'samples.npz').open('wb') as f:
      np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    write_tables(summary, out)
    plots.response_histograms(arrays, out / 'response_histograms.png', c.num_plot_displays)
    plots.swap_rate_by_distance(summary, out / 'swap_rate_by_cue_distance.png')
    plots.training_curve(run_record.read_metrics(workdir, member=member),
                         out / 'training_loss.png')
    if 'bns_swap_function' in summary:
      plots.swap_function(summary['bns_swap_function'], out / 'swap_function.png')
  sr = summary['swap_rate']
  progress.say(f"Evaluation: swap rate network {sr['network']:.3f} truth {sr['truth']:.3f}; "
               f"max bin error {summary['swap_rate_by_cue_distance']['max_abs_error']:.3f}; "
               f"energy distance {summary['energy_distance']['ratio_to_floor']:.2f} x noise "
               f'floor; written to {final}.')
  return summary


def judge_on_trials(config, workdir: str, samples_per_trial: int = 16) -> dict:
  """The trained network judged against real trials: those of `config.data` whose set size is
  `config.task.num_items`.

  On each trial's display the network gives `samples_per_trial` responses; the one real response
  is the data. Both are classed by their nearest item as in `summarise`.

  Returns a dict: num_trials; cue_distance_bins (centres, rad) with, per bin, the rate of
  responses nearest a non-target for the network and the data, and the (trial, non-target)
  pairs; circular_sd_around_target (rad) of both; heldout_loglik (nats a trial) of the real
  responses under the network's kernel density and the kappa used; and errors (response minus
  target, rad: 'network' (T * S,), 'data' (T,)) for figures.
  """
  if not ('data' in config and config.data.get('path')):
    raise ValueError('judge_on_trials needs config.data.path (trial data to judge against)')
  table = data_lib.load(config.data)
  keep = np.flatnonzero(table.set_size == config.task.num_items)
  if not keep.size:
    raise ValueError(f'{config.data.path} has no trials of set size {config.task.num_items} '
                     '(config.task.num_items)')
  table = table.take(keep)
  displays = table.displays()
  observed = jnp.asarray(table.response, jnp.float32)
  sample, state = checkpoints.load_trained(config, workdir)
  responses = sample.chunked(state.variables, displays, jax.random.key(config.eval.seed + 3),
                             samples_per_trial, DISPLAYS_PER_CHUNK,
                             what='the network on the real trials')
  edges = cue_bin_edges(config.eval.num_cue_bins, config.task.min_separation_cue)
  net_bins, pairs = swap_rate_by_cue_distance(item_frequencies(responses, displays), displays,
                                              edges)
  data_bins, _ = swap_rate_by_cue_distance(item_frequencies(observed[:, None], displays),
                                           displays, edges)
  target = displays.cued_report()
  errors = {'network': np.asarray(circular.wrap(responses - target[:, None])).ravel(),
            'data': np.asarray(circular.wrap(observed - target))}
  kappa = config.eval.kde_concentration
  return {
      'num_trials': int(keep.size), 'samples_per_trial': samples_per_trial,
      'cue_distance_bins': {'centres': (0.5 * (edges[1:] + edges[:-1])).tolist(),
                            'pairs': pairs.tolist()},
      'swap_rate_by_cue_distance': {'network': net_bins.tolist(), 'data': data_bins.tolist()},
      'circular_sd_around_target': {k: float(circular.circular_sd(v))
                                    for k, v in errors.items()},
      'heldout_loglik': {'network': kde_log_likelihood(responses, observed, kappa),
                         'kde_concentration': kappa},
      'errors': errors}
