"""`--mode=analyse` with `config.analysis.protocol = 'paper'`: the paper's mechanism analyses.

Records the trained network on every cue pair of `paper_protocol.settings_from_config` (each
pair: every pair of report values on a grid, each item cued, the variant's samples a display,
the network's noise on), then measures (see `paper_protocol`; `config.analysis.paper_variant`
picks the authors' recipe or ours): plane alignment over the delay, cue and response epochs
(the authors' skip the post-cue step), averaged over pairs with a bootstrap band, with sigmoid
and flat fits; the pre-cue alignment against cue distance; when swap and correct trials of a
display separate; and the network's swap rate on the task's own displays.

Writes into `<workdir>/analysis_paper/` (`member_<i>/` for each member of an ensemble):
  summary.json            every number below, and the settings used
  alignment.csv           step, epoch, step_in_epoch, mean, lower, upper, num_pairs
  alignment_per_pair.csv  pair, cue_a, cue_b, distance, step, cosine
  prediction.csv          distance, mean pre-cue alignment, pairs
  swap_decision.csv       step, epoch, step_in_epoch, auc, chance_lower, chance_upper,
                          projection_correct, projection_swap (means)
  alignment.png, precue_vs_distance.png, swap_decision.png
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import checkpoints
from rnn_behaviour import criteria
from rnn_behaviour import files
from rnn_behaviour import sampling
from rnn_behaviour import task as task_lib
from rnn_behaviour import train_step
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.analysis import decoding
from rnn_behaviour.analysis import paper_protocol as pp
from rnn_behaviour.analysis import planes
from rnn_behaviour.analysis import plots
from rnn_behaviour.configs import choices

PAPER_DIR = 'analysis_paper'
PROTOCOLS = choices.ANALYSIS_PROTOCOLS
# A network trained fewer steps than this is never called learned, whatever its swap rate.
MIN_TRAINED_STEPS = 100
SUMMARY_KEYS = ('learned', 'swap_rate', 'sigmoid_mse', 'flat_mse', 'alignment_precue', 'alignment_postcue',
                'precue_distance_slope', 'response_swap_auc')


def epoch_spans(epochs: task_lib.Epochs, skip_post_cue: bool = True) -> dict:
  """{epoch: (start, stop)} of the analysed epochs in analysed steps from the start of the
  delay (`paper_protocol.analysed_steps`; skip_post_cue: the authors' variant)."""
  return pp.analysed_steps(epochs, skip_post_cue)[1]


def _epoch_labels(epochs: task_lib.Epochs, skip_post_cue: bool) -> list[tuple[str, int]]:
  """(epoch, step within it) of every analysed step."""
  return [(name, i) for name, (start, stop) in epoch_spans(epochs, skip_post_cue).items()
          for i in range(stop - start)]


def analysed_pairs(config) -> tuple[np.ndarray, np.ndarray]:
  """(P, 2) cue features and (P,) cue distances of the analysed pairs (of the config's
  variant; index cueing: one pair stands for all)."""
  settings = pp.settings_from_config(config.analysis, config.task)
  return settings.cues, settings.distances


def network_swap_rate(sample, variables, config, key, num_displays: int = 256,
                      num_samples: int = 64, members: bool = False):
  """Share of the network's responses nearest a non-target, on the task's own displays; with
  `members`, (E,) rates of an ensemble (variables with a member axis) sampled in one call."""
  key_displays, key_sample = jax.random.split(key)
  displays = task_lib.displays_from_config(key_displays, num_displays, config.task)
  draw = sample.members if members else sample
  responses = jax.jit(lambda v, i, k: draw(v, i, k, num_samples))(
      variables, sample.epoch_inputs(displays), key_sample)
  if members:
    return [float(jnp.mean(decoding.swap_labels(r, displays))) for r in responses]
  return float(jnp.mean(decoding.swap_labels(responses, displays)))


def analyse_network(config, sample, variables, key) -> tuple[dict, dict]:
  """All of the paper's analyses of one network, sampled through the seam `sample`
  (`sampling.Sampler`): (numbers, arrays for tables and figures)."""
  return _analyse(config, sample, variables, key, members=False)[0]


def analyse_members(config, sample, variables, key) -> list[tuple[dict, dict]]:
  """`analyse_network` of every member of an ensemble (variables with a leading member axis),
  each cue pair's trials of all members recorded in one vmapped call."""
  return _analyse(config, sample, variables, key, members=True)


def _analyse(config, sample, variables, key, members: bool) -> list[tuple[dict, dict]]:
  c = config.analysis
  settings = pp.settings_from_config(c, config.task)
  key_pairs, key_swap, key_rate = jax.random.split(key, 3)
  draw = sample.members if members else sample
  # One program for every pair, the variables its constants.
  recorder = jax.jit(lambda displays, k: draw(variables, displays, k,
                                              settings.samples_per_display, record=True))
  readouts = variables['constants']['readout']
  count = readouts.shape[0] if members else 1
  pairs = [_PairRecords() for _ in range(count)]
  started = time.time()
  for p, cue_features in enumerate(settings.cues):
    displays = pp.pair_displays(cue_features, settings.report_values,
                                config.task.min_separation_report)
    responses, states = recorder(displays, jax.random.fold_in(key_pairs, p))
    for m, records in enumerate(pairs):
      records.add(config, sample.network.epochs, settings, p, displays,
                  responses[m] if members else responses, states[m] if members else states,
                  readouts[m] if members else readouts)
      logging.info('paper analysis%s: cue pair %d/%d (distance %.0f deg): swap rate %.3f, '
                   '|cos| before the cue %.2f; %.0f s elapsed',
                   f' member {m}' if members else '', p + 1, len(settings.cues),
                   np.degrees(settings.distances[p]), records.swap_rates[-1],
                   records.per_pair[-1][records.precue_step], time.time() - started)
  swap_rates = network_swap_rate(sample, variables, config, key_rate, members=members)
  swap_rates = swap_rates if members else [swap_rates]
  return [_summarise_pairs(config, sample.network.epochs, settings, records, rate, key_swap)
          for records, rate in zip(pairs, swap_rates)]


class _PairRecords:
  """What one network's recorded pairs leave for the summary: the alignment over steps per
  pair, the swap rate per pair, and the null-space states and swap labels of the decoded
  displays of the nearest pairs."""

  def __init__(self):
    self.per_pair, self.swap_rates, self.swap_states, self.swap_labels = [], [], [], []
    self.precue_step = None

  def add(self, config, epochs, settings, p: int, displays, responses, states, readout):
    recipe = settings.recipe
    steps, spans = pp.analysed_steps(epochs, recipe.skip_post_cue)
    self.precue_step = spans['cue'][0] - 1
    distances = settings.distances
    c = config.analysis
    states = states[steps]
    swap = decoding.swap_labels(responses, displays)
    self.per_pair.append(np.asarray(pp.pair_alignment(
        states, readout, displays.cued, responses, ~swap, c.reported_bins,
        subtract_unit_mean=recipe.subtract_unit_mean, keep_empty_bins=recipe.keep_empty_bins)))
    self.swap_rates.append(float(jnp.mean(swap)))
    nearest = distances.min()
    if np.isclose(distances[p], nearest):
      # The nearest pairs make the most swaps: a subsample of their displays is decoded.
      pick = np.random.default_rng(p).permutation(displays.num_displays)
      pick = pick[:max(c.swap_displays // int(np.isclose(distances, nearest).sum()), 2)]
      self.swap_states.append(pp.project_null(states[:, pick], readout))
      self.swap_labels.append(swap[pick])


def _summarise_pairs(config, epochs, settings, records: _PairRecords, swap_rate: float,
                     key_swap) -> tuple[dict, dict]:
  """One network's numbers and arrays from its recorded pairs (see `analyse_network`)."""
  c = config.analysis
  recipe = settings.recipe
  _, spans = pp.analysed_steps(epochs, recipe.skip_post_cue)
  cue_onset = spans['cue'][0]
  # The last step before the cue, and the last before the response.
  precue_step, postcue_step = cue_onset - 1, spans['response'][0] - 1
  cues, distances = settings.cues, settings.distances
  per_pair = np.stack(records.per_pair)
  average = pp.average_over_pairs(per_pair, seed=int(c.seed), num_bootstrap=c.num_bootstrap)
  fit = planes.fit_sigmoid_vs_flat(np.arange(per_pair.shape[1]) - cue_onset, average.mean)
  prediction = pp.precue_prediction(per_pair[:, precue_step], distances, seed=int(c.seed),
                                    num_bootstrap=c.num_bootstrap)

  states = jnp.concatenate(records.swap_states, axis=1)
  labels = jnp.concatenate(records.swap_labels)
  decision = decoding.swap_auc_over_time(key_swap, states, labels, num_shuffles=c.num_shuffles)
  auc, band = np.asarray(decision.auc), np.asarray(decision.band)
  response = slice(spans['response'][0], None)
  late = slice(response.start + epochs.response // 2, None)
  best = int(np.nanargmax(np.where(np.arange(auc.size) >= response.start, auc, -np.inf)))
  direction = pp.discriminating_direction(states[best], labels)
  projected = np.asarray(pp.projections(states, direction)).reshape(auc.size, -1)
  flat_labels = np.asarray(labels).reshape(-1)
  decided = pp.decided_from(auc, band[1])
  labels_by_step = _epoch_labels(epochs, recipe.skip_post_cue)

  numbers = dict(
      swap_rate=swap_rate,
      sigmoid_mse=fit['sigmoid_mse'], flat_mse=fit['flat_mse'],
      alignment_precue=float(average.mean[precue_step]),
      alignment_postcue=float(average.mean[postcue_step]),
      precue_distance_slope=prediction['slope'],
      response_swap_auc=float(np.nanmean(auc[late])),
      precue_swap_auc=float(np.nanmax(auc[:cue_onset])) if np.isfinite(auc[:cue_onset]).any()
      else float('nan'),
      swap_decided_from=(None if decided is None
                         else '{}+{}'.format(*labels_by_step[decided])),
      alignment_fit=fit, prediction=prediction,
      grid_swap_rate=float(np.mean(records.swap_rates)),
      swap_trials_decoded=int(flat_labels.sum()), trials_decoded=int(flat_labels.size),
      settings=dict(variant=settings.variant, num_pairs=int(len(cues)),
                    distances_deg=np.degrees(np.unique(distances)).tolist(),
                    report_values=int(settings.report_values),
                    reported_bins=int(c.reported_bins),
                    samples_per_display=int(settings.samples_per_display),
                    swap_direction_step='{}+{}'.format(*labels_by_step[best])))
  arrays = dict(per_pair=per_pair, cues=cues, distances=distances, average=average,
                auc=auc, band=band, projection=projected, swap=flat_labels,
                spans=spans, cue_onset=cue_onset, labels=labels_by_step,
                precue_step=precue_step)
  return numbers, arrays


def _json_safe(value):
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return float(value) if np.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  return value


def write_outputs(folder: str, numbers: dict, arrays: dict, title: str) -> None:
  """summary.json, the CSV tables and the three figures of one analysed network."""
  out = epath.Path(folder)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'summary.json').write_text(json.dumps(_json_safe(numbers), indent=2))
  average, labels = arrays['average'], arrays['labels']
  files.write_csv(out / 'alignment.csv',
             ('step', 'epoch', 'step_in_epoch', 'mean', 'lower', 'upper', 'num_pairs'),
             [(t, e, i, average.mean[t], average.band[0, t], average.band[1, t],
               average.num_pairs[t]) for t, (e, i) in enumerate(labels)])
  files.write_csv(out / 'alignment_per_pair.csv',
             ('pair', 'cue_a', 'cue_b', 'distance', 'step', 'cosine'),
             [(p, *arrays['cues'][p], arrays['distances'][p], t, arrays['per_pair'][p, t])
              for p in range(arrays['per_pair'].shape[0])
              for t in range(arrays['per_pair'].shape[1])])
  prediction = numbers['prediction']
  files.write_csv(out / 'prediction.csv', ('distance', 'mean_precue_alignment'),
             zip(prediction['distances'], prediction['means']))
  swap = arrays['swap']
  projection = arrays['projection']
  correct_mean = projection[:, ~swap].mean(axis=1) if (~swap).any() else np.full(len(labels), np.nan)
  swap_mean = projection[:, swap].mean(axis=1) if swap.any() else np.full(len(labels), np.nan)
  files.write_csv(out / 'swap_decision.csv',
             ('step', 'epoch', 'step_in_epoch', 'auc', 'chance_lower', 'chance_upper',
              'projection_correct', 'projection_swap'),
             [(t, e, i, arrays['auc'][t], arrays['band'][0, t], arrays['band'][1, t],
               correct_mean[t], swap_mean[t]) for t, (e, i) in enumerate(labels)])
  files.save_figure(plots.plot_paper_alignment(
      average.mean, average.band, numbers['alignment_fit'], arrays['spans'],
      arrays['cue_onset'], f'Plane alignment, paper protocol ({title})'),
                    os.fspath(out / 'alignment.png'))
  files.save_figure(plots.plot_precue_vs_distance(
      arrays['distances'], arrays['per_pair'][:, arrays['precue_step']], prediction,
      f'Before the cue: alignment vs cue distance ({title})'),
                    os.fspath(out / 'precue_vs_distance.png'))
  files.save_figure(plots.plot_swap_decision(
      arrays['auc'], arrays['band'], projection[:, ~swap], projection[:, swap], arrays['spans'],
      f'Where a swap is decided ({title}; {int(swap.sum())} swaps of {swap.size} trials)'),
                    os.fspath(out / 'swap_decision.png'))


def selection_status(config, workdir: str, state, members: list) -> list[dict]:
  """Whether each analysed network learned cue selection, per member.

  From the stage's criterion record when training had one (`criteria`, written by a
  curriculum), else measured now with the default criterion on its held-out displays. A
  network trained fewer than MIN_TRAINED_STEPS steps has not learned.
  """
  record = criteria.read_record(workdir)
  steps = np.asarray(state.step).reshape(-1)
  if record is not None and len(record['members']) == len(members):
    binned = bool(record['settings'].get('bin_tolerance'))
    found = [dict(learned=bool(m['learned']), selection_swap_rate=m['swap_rate'],
                  selection_target=m['target_swap_rate'], criterion='training record',
                  **({'selection_max_bin_error': m['max_bin_error']} if binned else {}))
             for m in record['members']]
  else:
    settings = criteria.settings_for(None)
    sample = sampling.make_sampler(config)
    check = criteria.make_checker(config, sample, len(members), settings, workdir)
    found = [dict(learned=bool(r['met']), selection_swap_rate=r['swap_rate'],
                  selection_target=r['target_swap_rate'], criterion='measured at analysis')
             for r in check(state.variables, int(steps.max()))]
  for status, step in zip(found, np.broadcast_to(steps, (len(members),))):
    if step < MIN_TRAINED_STEPS:
      status['learned'] = False
    if not status['learned']:
      bins = status.get('selection_max_bin_error')
      status['warning'] = (
          f"this network did not learn cue selection (swap rate "
          f"{status['selection_swap_rate']:.3f} against its target's "
          f"{status['selection_target']:.3f}"
          + (f', largest error in a cue-distance bin {bins:.3f}' if bins is not None else '')
          + f'; {int(step)} steps trained): its planes and decoders do not describe a network '
          'that does the task')
  return found


def member_folder(workdir: str, member: int | None) -> str:
  folder = epath.Path(workdir) / PAPER_DIR
  return os.fspath(folder if member is None else folder / f'member_{member}')


def analyse(config, workdir: str) -> list[dict]:
  """The paper's analyses of the network in `workdir` (of every member of an ensemble); returns
  one numbers dict per network. A member already analysed (its folder complete) is read back;
  the others are recorded together (one vmapped call a cue pair) and each member's folder
  appears whole or not at all (workdir.whole_folder)."""
  if config.task.num_items != 2:
    raise ValueError('the paper protocol needs two-item displays; config.task.num_items is '
                     f'{config.task.num_items}')
  size = train_step.ensemble_size(config)
  members = [None] if size == 1 else list(range(size))
  done = {m: _read_analysed(member_folder(workdir, m)) for m in members}
  todo = [m for m in members if done[m] is None]
  if todo:
    sample, whole = checkpoints.load_trained(config, workdir)
    status = selection_status(config, workdir, whole, members)
    key = jax.random.key(config.analysis.seed)
    if todo == [None]:
      analysed = [analyse_network(config, sample, whole.variables, key)]
      steps = [int(whole.step)]
    else:
      picked = jax.tree_util.tree_map(lambda a: a[np.asarray(todo)], whole)
      analysed = analyse_members(config, sample, picked.variables, key)
      steps = [int(s) for s in np.asarray(picked.step)]
    for member, (numbers, arrays), step in zip(todo, analysed, steps):
      done[member] = _write_member(config, workdir, member, numbers, arrays, step,
                                   status[member or 0])
  return [done[m] for m in members]


def _read_analysed(folder: str) -> dict | None:
  """The summary of a member analysed before (its folder complete), else None."""
  summary = epath.Path(folder) / 'summary.json'
  if workdir_lib.is_complete(folder) and summary.exists():
    return json.loads(summary.read_text())
  return None


def _write_member(config, workdir: str, member: int | None, numbers: dict, arrays: dict,
                  step: int, mine: dict) -> dict:
  """One analysed network's folder, written whole; returns its JSON-safe numbers."""
  seed = config.seed + (member or 0)
  folder = member_folder(workdir, member)
  logging.info('Paper analysis of %s%s', workdir, '' if member is None else f' member {member}')
  if 'warning' in mine:
    logging.warning('Paper analysis of %s (seed %d): %s.', workdir, seed, mine['warning'])
  numbers['trained_steps'] = step
  numbers['seed'] = int(seed)
  numbers.update(mine)
  title = f'seed {seed}' + ('' if mine['learned'] else '; DID NOT LEARN cue selection')
  # Whole or not at all: an interrupted analysis leaves the previous folder (or none).
  with workdir_lib.whole_folder(folder) as scratch:
    write_outputs(os.fspath(scratch), numbers, arrays, title)
  logging.info('Paper analysis written to %s: %s', folder,
               {k: numbers[k] for k in SUMMARY_KEYS})
  return _json_safe(numbers)
