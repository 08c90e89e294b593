"""`DIR/report/index.html`: one self-contained page, and its tables as CSV beside it.

`collect(config, workdir)` gathers the numbers the stages wrote; `make_figures` draws the
report's figures into DIR/report/figures/ (the behavioural fit's own figures are taken as they
are); `render(results, figures)` is the page as a string (pure: tests build it from fixtures);
`write_report` does all three and writes the CSV tables. Figures are PNGs inlined as base64
data URIs and the style sheet is inline, so the file opens from a disk or a shared drive with
no network access.
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import importlib.metadata
import io
import json
import os
import platform
import subprocess
import sys

from etils import epath
import jax
import numpy as np

from rnn_behaviour import criteria
from rnn_behaviour import files
from rnn_behaviour import train
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.analysis import run_paper
from rnn_behaviour.lab_report import figures
from rnn_behaviour.lab_report import judge
from rnn_behaviour.lab_report import stages

REPORT_DIR = 'report'
SECTIONS = ('data', 'networks', 'mechanism', 'provenance')
PACKAGES = ('rnn_behaviour', 'jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpyro',
            'numpy', 'scipy', 'ml_collections', 'etils', 'matplotlib')
BEHAVIOUR_FIGURES = (
    ('error_histograms.png', 'Response error (response minus target) per set size on the '
     'fitting trials, with the predictive density of each fitted model.'),
    ('swap_probability.png', 'BNS: the probability of reporting a non-target against its cue '
     'distance (posterior mean and 90% credible band), with the empirical rate of responses '
     'nearest a non-target and the rate BNS predicts for that statistic.'),
    ('ppc_nontarget_proximity.png', 'Posterior-predictive check: the share of responses near a '
     'non-target (within 0.4 rad of it, more than 0.8 rad from the target) by cue distance, '
     'data against the BNS\'s 90% predictive band.'))


# ---------------------------------------------------------------------------- collect


def _read_json(path):
  path = epath.Path(path)
  return json.loads(path.read_text()) if path.exists() else None


def _read_csv(path) -> list[dict]:
  path = epath.Path(path)
  if not path.exists():
    return []
  return list(csv.DictReader(io.StringIO(path.read_text(), newline='')))


def _num(value) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    return float('nan')


def mixture_means(rows: list[dict], model: str = 'three_component') -> list[dict]:
  """Mean over subjects (cells) per set size of a mixture model's parameters."""
  out = []
  for n in sorted({int(r['set_size']) for r in rows if r['model'] == model}):
    cells = [r for r in rows if r['model'] == model and int(r['set_size']) == n]
    out.append(dict(set_size=n, cells=len(cells),
                    **{k: float(np.mean([_num(r[k]) for r in cells]))
                       for k in ('p_t', 'p_n', 'p_u', 'sd', 'kappa')}))
  return out


def swap_function_summary(rows: list[dict]) -> list[dict]:
  """Per set size, the BNS swap logit (posterior mean, 90% band) at the nearest and farthest
  cue distance the data hold (pi/4 and pi on the Bays grid; the grid's ends otherwise)."""
  out = []
  for n in sorted({int(r['set_size']) for r in rows if r['dimension'] == 'cue'}):
    curve = [r for r in rows if int(r['set_size']) == n and r['dimension'] == 'cue']
    distance = np.array([_num(r['distance']) for r in curve])
    for label, d in (('near', np.pi / 4), ('far', np.pi)):
      r = curve[int(np.argmin(np.abs(distance - d)))]
      out.append(dict(set_size=n, where=label, distance=_num(r['distance']),
                      logit_mean=_num(r['logit_mean']), logit_lower=_num(r['logit_lower']),
                      logit_upper=_num(r['logit_upper'])))
  return out


def _curve(records) -> tuple[list, list]:
  pairs = [(r['step'], r['loss']) for r in records if 'loss' in r and 'step' in r]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def _mechanism_member(folder: str, numbers: dict, label: str, learned: bool) -> dict:
  alignment = _read_csv(epath.Path(folder) / 'alignment.csv')
  decision = _read_csv(epath.Path(folder) / 'swap_decision.csv')
  prediction = numbers.get('prediction') or {}
  return dict(label=label, learned=learned,
              alignment=[_num(r['mean']) for r in alignment],
              auc=[_num(r['auc']) for r in decision],
              chance_upper=[_num(r['chance_upper']) for r in decision],
              distances=list(prediction.get('distances', [])),
              prediction=list(prediction.get('means', [])))


def training_path(config, workdir: str, set_size: int) -> list[dict]:
  """One row a curriculum stage of the diffusion ensemble (its criterion.json): what it
  trained, where it ended, and each member's held-out swap rate against the stage's target."""
  rows = []
  for name in stages.stage_names(config):
    record = criteria.read_record(epath.Path(stages.set_size_dir(workdir, set_size)) / name)
    if record is None:
      continue
    members = record.get('members', [])
    rows.append(dict(
        set_size=set_size, stage=name, trains=stages.STAGE_WHAT[name],
        ended_at_step=record['met_step'] if record['met'] else record['last_step'],
        budget=record['budget'], met=record['met'],
        swap_rates=' / '.join(f"{m['swap_rate']:.3f}" for m in members),
        target_swap_rate=members[0]['target_swap_rate'] if members else None,
        learned=f"{sum(bool(m['learned']) for m in members)} of {len(members)}"))
  return rows


def collect(config, workdir: str) -> dict:
  """Every number the page shows, from the files the stages wrote (JSON-able)."""
  root = epath.Path(workdir)
  tolerance = float(config.report.swap_tolerance)
  baseline = config.report.baseline or None
  split = _read_json(root / stages.DATA_DIR / stages.SPLIT_FILE) or {}
  behaviour = root / 'behaviour'
  fit_summary = _read_json(behaviour / 'summary.json') or {}
  results = dict(
      title=config.report.title or os.path.basename(split.get('path', 'trials')),
      tolerance=tolerance, baseline=baseline, data=split,
      mixture=mixture_means(_read_csv(behaviour / 'mixture_fits.csv')),
      swap_function=swap_function_summary(_read_csv(behaviour / 'swap_function.csv')),
      ppc=[{k: (_num(v) if k not in ('warning',) else v) for k, v in r.items()}
           for r in _read_csv(behaviour / 'ppc_nontarget_proximity.csv')],
      fit_warnings=fit_summary.get('warnings', []), set_sizes=[])
  for n in split.get('chosen_set_sizes', []):
    held = _read_json(epath.Path(stages.set_size_dir(workdir, n)) / stages.HELDOUT_FILE)
    if held is None:
      continue
    c = stages.run_config(config, workdir, n)
    dirs = stages.run_dirs(config, workdir, n)
    members = [k for k in held if k.startswith('member_')]
    curves = {m: _curve(train.read_metrics(dirs[stages.DIFFUSION], member=int(m.split('_')[1])
                                           if train.ensemble_size(c) > 1 else None))
              for m in members}
    if baseline and baseline in dirs:
      curves[baseline] = _curve(train.read_metrics(dirs[baseline]))
    bns_rate = held['bns']['swap_rate']
    rows = []
    for m in members + ([baseline] if baseline and baseline in held else []):
      rows.append(dict(set_size=n, model='diffusion' if m.startswith('member_') else m,
                       member=m, seed=held['seeds'][m],
                       trained_steps=held['trained_steps'][
                           stages.DIFFUSION if m.startswith('member_') else m],
                       swap_rate=held[m]['swap_rate'], target_swap_rate=bns_rate,
                       data_swap_rate=held['data']['swap_rate'],
                       learned_cue_selection=judge.learned_cue_selection(
                           held[m]['swap_rate'], bns_rate, tolerance),
                       heldout_loglik=held[m]['heldout_loglik'],
                       bns_heldout_loglik=held['bns']['heldout_loglik'],
                       circular_sd=held[m]['circular_sd'],
                       data_circular_sd=held['data']['circular_sd']))
    evaluations = stages.eval_summaries(c, dirs[stages.DIFFUSION])
    for row, summary in zip(rows, evaluations):
      if summary:
        row['surrogate_swap_rate_error'] = abs(summary['swap_rate']['network']
                                               - summary['swap_rate']['truth'])
        row['energy_distance_ratio'] = summary['energy_distance']['ratio_to_floor']
    mechanism, mech_rows = None, []
    if n == 2:
      mech_members, analysed = [], []
      for i, m in enumerate(members):
        member = i if train.ensemble_size(c) > 1 else None
        folder = run_paper.member_folder(dirs[stages.DIFFUSION], member)
        numbers = (_read_json(epath.Path(folder) / 'summary.json')
                   if workdir_lib.is_complete(folder) else None)
        learned = rows[i]['learned_cue_selection']
        if numbers is None:
          continue
        analysed.append(dict(numbers, learned=learned, analysed=True))
        mech_members.append(_mechanism_member(folder, numbers, m.replace('_', ' '), learned))
        mech_rows.append(dict(
            set_size=n, member=m, seed=held['seeds'][m], learned_cue_selection=learned,
            **{k: numbers.get(k) for k in run_paper.SUMMARY_KEYS},
            precue_slope_lower=(numbers.get('prediction') or {}).get('slope_interval',
                                                                      [None, None])[0],
            precue_slope_upper=(numbers.get('prediction') or {}).get('slope_interval',
                                                                      [None, None])[1],
            swap_decided_from=numbers.get('swap_decided_from')))
      conclusion = (judge.mechanism_conclusion(n, analysed, tolerance) if analysed else dict(
          trustworthy=False, interpreted=[], sentences=[],
          gate=f'Set size {n}: the mechanism analyses have not run yet.'))
      mechanism = dict(conclusion=conclusion, members=mech_members,
                       spans=run_paper.epoch_spans(train.build(c, behaviour_model=False)
                                                   .network.epochs))
    else:
      conclusion = judge.mechanism_conclusion(n, [dict(analysed=False)], tolerance)
      mechanism = dict(conclusion=conclusion, members=[], spans={})
    results['set_sizes'].append(dict(
        set_size=n, judged={k: v for k, v in held.items() if isinstance(v, dict)
                            and 'swap_rate' in v},
        centres=held['centres'], members=members, curves=curves, rows=rows,
        examples=held['examples'], mechanism=mechanism, mechanism_rows=mech_rows,
        path_rows=training_path(config, workdir, n),
        conclusion=judge.network_conclusion(n, held, members, baseline, tolerance)))
  return results


# ---------------------------------------------------------------------------- figures


def make_figures(results: dict, workdir: str, out: str) -> dict:
  """Draws the report's figures into `out`; returns {section: [(caption, path)]}."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  out = epath.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  made = {name: [] for name in SECTIONS}

  def save(section, name, fig, caption):
    path = os.fspath(out / f'{name}.png')
    files.save_figure(fig, path, dpi=100)
    plt.close(fig)
    made[section].append((caption, path))

  for name, caption in BEHAVIOUR_FIGURES:
    path = epath.Path(workdir) / 'behaviour' / name
    if path.exists():
      made['data'].append((caption, os.fspath(path)))
  swap_panels, ll_panels = [], []
  for entry in results['set_sizes']:
    n, judged = entry['set_size'], entry['judged']
    members, baseline = entry['members'], results['baseline']
    save('networks', f'learning_curves_{n}', figures.learning_curves(
        entry['curves'], f'Set size {n}: training loss'),
         f'Set size {n}: learning curves of the diffusion networks (one line a member) and the '
         'baseline.')
    with epath.Path(stages.set_size_dir(workdir, n), stages.HELDOUT_SAMPLES).open('rb') as f:
      arrays = dict(np.load(io.BytesIO(f.read())))
    network = np.stack([arrays[f'samples_{m}'] for m in members])
    save('networks', f'examples_{n}', figures.example_displays(
        arrays['report'], arrays['cue'], arrays['cued'], arrays['observed'], network,
        arrays['samples_bns'], entry['examples'],
        f'Set size {n}: responses on {len(entry["examples"])} held-out trials'),
         f'Set size {n}: response distributions on held-out trials (the most swap-prone first): '
         'the networks\' samples and the BNS posterior predictive\'s (the surrogate the '
         'networks were trained on), against the subject\'s one real response (triangle).')
    has_baseline = baseline is not None and baseline in judged
    swap_panels.append(dict(
        set_size=n, centres=entry['centres'],
        members=[judged[m]['swap_rate_by_distance'] for m in members],
        bns=judged['bns']['swap_rate_by_distance'],
        data=judged['data']['swap_rate_by_distance'], pairs=judged['data']['pairs'],
        baseline=judged[baseline]['swap_rate_by_distance'] if has_baseline else None))
    ll_panels.append(dict(set_size=n, members=[judged[m]['heldout_loglik'] for m in members],
                          bns=judged['bns']['heldout_loglik'],
                          baseline=judged[baseline]['heldout_loglik'] if has_baseline
                          else None))
    mech = entry['mechanism']
    if mech and mech['members']:
      save('mechanism', f'mechanism_{n}', figures.mechanism_spread(
          mech['members'], mech['spans'], f'Set size {n}: the paper\'s analyses, every member'),
           f'Set size {n}: plane alignment over time (left), the pre-cue alignment against cue '
           'distance (middle) and when a swap is decided (right), with the spread over members '
           '(dotted: a member that did not learn cue selection).')
  if swap_panels:
    save('networks', 'swap_by_distance', figures.swap_by_distance(swap_panels),
         'Swap rate by the non-target\'s cue distance on the held-out trials: networks (band: '
         'range over members), baseline, BNS and the data.')
    save('networks', 'heldout_loglik', figures.heldout_loglik(ll_panels),
         'Held-out log-likelihood of the real responses (nats a trial, von Mises kernel density '
         'of each model\'s samples on the same trials).')
  return made


# ---------------------------------------------------------------------------- provenance


def package_versions() -> dict:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = 'not installed'
  return versions


def git_commit() -> str:
  """The checkout's commit (with '+ local changes' when dirty), or why it is unknown."""
  folder = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=folder, capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           cwd=folder, capture_output=True, text=True, timeout=10).stdout
    return commit + (' + local changes' if dirty.strip() else '')
  except (OSError, subprocess.SubprocessError):
    return 'unknown (not a git checkout)'


def machine() -> dict:
  info = dict(host=platform.node(), platform=platform.platform(),
              python=platform.python_version(), cpus=os.cpu_count(),
              devices=', '.join(str(d) for d in jax.devices()))
  if hasattr(os, 'getloadavg'):
    info['load average (1, 5, 15 min) at the end'] = ', '.join(f'{x:.2f}'
                                                               for x in os.getloadavg())
  return info


def provenance(config, timings: dict, started: float) -> dict:
  return dict(config=config.to_json_best_effort(indent=1), versions=package_versions(),
              commit=git_commit(), machine=machine(), command=' '.join(sys.argv),
              date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
              timings=[dict(stage=k, seconds=v['seconds'], skipped=v['skipped'])
                       for k, v in timings.items()],
              wall_seconds=float(datetime.datetime.now().timestamp() - started))


# ---------------------------------------------------------------------------- render

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
line-height:1.45;background:#fafafa}
header,main{max-width:1180px;margin:0 auto;padding:0 16px}
header{padding-top:12px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 16px;
z-index:1}
nav a{margin-right:18px;text-decoration:none;color:#1a5fb4;font-weight:600}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;margin:16px 0;padding:4px 16px 12px}
h1{font-size:1.5em;margin:8px 0} h2{font-size:1.25em} h3{font-size:1.05em;margin-bottom:4px}
figure{margin:10px 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#555}
table{border-collapse:collapse;font-size:.85em;margin:6px 0;display:block;overflow-x:auto;
max-width:100%} th,td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f0f0f0} td.text{text-align:left}
.verdict{padding:6px 10px;border-left:4px solid #1a5fb4;background:#f3f7fd;margin:8px 0}
.warn{border-left-color:#c01c28;background:#fdf3f3}
pre{font-size:.75em;background:#f6f6f6;padding:8px;overflow-x:auto;max-height:420px}
.csv{font-size:.85em;color:#555}
"""


def _e(value) -> str:
  return html.escape(str(value))


def _fmt(value) -> str:
  if isinstance(value, bool) or value is None:
    return '' if value is None else ('yes' if value else 'no')
  if isinstance(value, (float, np.floating)):
    if not np.isfinite(value):
      return 'NaN'
    return f'{value:.4g}' if abs(value) < 1e4 else f'{value:.0f}'
  return str(value)


def table_html(rows: list[dict], columns=None) -> str:
  if not rows:
    return '<p><i>(none)</i></p>'
  columns = list(columns or rows[0])
  head = ''.join(f'<th>{_e(c)}</th>' for c in columns)
  body = ''.join(
      '<tr>' + ''.join(
          f'<td class="text">{_e(_fmt(r.get(c)))}</td>' if isinstance(r.get(c), str)
          else f'<td>{_e(_fmt(r.get(c)))}</td>' for c in columns) + '</tr>' for r in rows)
  return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def image_html(caption: str, png: bytes) -> str:
  data = base64.b64encode(png).decode('ascii')
  return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
          f'<figcaption>{_e(caption)}</figcaption></figure>')


def _verdict(text: str, warn: bool = False) -> str:
  return f'<p class="verdict{" warn" if warn else ""}">{_e(text)}</p>'


def render(results: dict, figure_bytes: dict, tables: dict | None = None) -> str:
  """The page. figure_bytes: {section: [(caption, png bytes)]}; tables: {name: csv file name}
  (linked as files beside the page)."""
  tables = tables or {}
  figs = lambda section: ''.join(image_html(c, b) for c, b in figure_bytes.get(section, []))
  csv_links = lambda *names: ('<p class="csv">Tables as CSV: ' + ', '.join(
      f'<a href="{_e(tables[n])}">{_e(tables[n])}</a>' for n in names if n in tables) + '</p>'
                              if any(n in tables for n in names) else '')
  data = results['data']
  summary_lines = ''.join(f'<li>{_e(s["conclusion"])} '
                          f'{_e(s["mechanism"]["conclusion"]["gate"])}</li>'
                          for s in results['set_sizes'])
  parts = [f'<header><h1>{_e(results["title"])}: networks trained to behave like the '
           'subjects</h1>',
           f'<p>{_e(data.get("trials", "?"))} trials, {len(data.get("subjects", []))} subjects, '
           f'set sizes {_e(data.get("set_sizes", []))}; networks trained on set sizes '
           f'{_e(data.get("chosen_set_sizes", []))}.</p><ul>{summary_lines}</ul></header>',
           '<nav>' + ''.join(f'<a href="#{s}">{s.capitalize()}</a>' for s in SECTIONS)
           + '</nav><main>']

  # Data.
  parts.append('<section id="data"><h2>Data</h2>')
  parts.append(f'<p>File: <code>{_e(data.get("path", ""))}</code> ({_e(data.get("format", ""))}). '
               f'A share of {_e(results.get("heldout_fraction_text", ""))} each subject x set '
               'size x condition cell is held out: the behavioural models are fitted to the '
               'rest, and every model is judged on the held-out trials.</p>')
  parts.append(table_html(data.get('by_set_size', [])))
  parts.append('<h3>Three-component mixture (mean over subjects)</h3>'
               + table_html(results['mixture']))
  parts.append('<h3>BNS swap function (logit of reporting a non-target, 90% credible band)</h3>'
               + table_html(results['swap_function']))
  parts.append('<h3>Posterior-predictive check</h3>' + table_html(
      results['ppc'], ['set_size', 'cue_distance', 'n', 'data_rate', 'model_lower',
                       'model_mean', 'model_upper', 'ppp', 'warning']))
  for w in results['fit_warnings']:
    parts.append(_verdict(w, warn=True))
  parts.append(figs('data') + csv_links('data', 'mixture', 'swap_function', 'ppc')
               + '</section>')

  # Networks.
  parts.append('<section id="networks"><h2>Networks</h2>')
  for s in results['set_sizes']:
    parts.append(f'<h3>Set size {s["set_size"]}</h3>' + _verdict(s['conclusion']))
  parts.append(table_html([r for s in results['set_sizes'] for r in s['rows']]))
  path = [r for s in results['set_sizes'] for r in s.get('path_rows', [])]
  if path:
    parts.append('<h3>Training path</h3><p>The ensemble learns to select the cued item in the '
                 'short shape first, then diffusion, then the BNS posterior predictive; each '
                 f'stage ends when the held-out swap rate is within {_e(results["tolerance"])} '
                 "of the stage's target (a task-optimal stage: at most that far above it) in "
                 'enough members, or when its budget is spent.</p>' + table_html(path))
  parts.append(figs('networks') + csv_links('networks', 'swap_by_distance', 'training_path')
               + '</section>')

  # Mechanism.
  parts.append('<section id="mechanism"><h2>Mechanism</h2>')
  for s in results['set_sizes']:
    conclusion = s['mechanism']['conclusion']
    parts.append(f'<h3>Set size {s["set_size"]}</h3>')
    parts.append(_verdict(conclusion['gate'], warn=not conclusion['trustworthy']))
    parts.append('<ul>' + ''.join(f'<li>{_e(t)}</li>' for t in conclusion['sentences'])
                 + '</ul>')
    trust = ('Trustworthy: the networks that learned cue selection agree.'
             if conclusion['trustworthy'] else
             'Not trustworthy as a finding: see the sentence above.')
    parts.append(f'<p><b>{_e(trust)}</b></p>')
  parts.append(table_html([r for s in results['set_sizes'] for r in s['mechanism_rows']]))
  parts.append(figs('mechanism') + csv_links('mechanism') + '</section>')

  # Provenance.
  prov = results.get('provenance', {})
  parts.append('<section id="provenance"><h2>Provenance</h2>')
  parts.append(f'<p>Made {_e(prov.get("date", ""))} by <code>{_e(prov.get("command", ""))}</code>'
               f'; commit <code>{_e(prov.get("commit", ""))}</code>; wall time of this call '
               f'{_fmt(prov.get("wall_seconds"))} s.</p>')
  parts.append('<h3>Wall times</h3>' + table_html(prov.get('timings', [])))
  parts.append('<h3>Machine</h3>' + table_html(
      [dict(field=k, value=str(v)) for k, v in prov.get('machine', {}).items()]))
  parts.append('<h3>Package versions</h3>' + table_html(
      [dict(package=k, version=v) for k, v in prov.get('versions', {}).items()]))
  parts.append('<details><summary>Config</summary><pre>' + _e(prov.get('config', ''))
               + '</pre></details>' + csv_links('timings') + '</section>')
  parts.append('</main>')
  return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
          '<meta name="viewport" content="width=device-width, initial-scale=1">'
          f'<title>{_e(results["title"])}: report</title><style>{STYLE}</style></head><body>'
          + ''.join(parts) + '</body></html>')


# ---------------------------------------------------------------------------- write


def csv_tables(results: dict) -> dict:
  """{name: (columns, rows)} of the page's tables."""
  rows = lambda key: [r for s in results['set_sizes'] for r in s[key]]
  swap_rows = []
  for s in results['set_sizes']:
    for name, values in s['judged'].items():
      for b, centre in enumerate(s['centres']):
        swap_rows.append(dict(set_size=s['set_size'], model=name, bin_centre_rad=centre,
                              swap_rate=values['swap_rate_by_distance'][b]))
  tables = dict(
      data=results['data'].get('by_set_size', []), mixture=results['mixture'],
      swap_function=results['swap_function'], ppc=results['ppc'],
      networks=rows('rows'), swap_by_distance=swap_rows, mechanism=rows('mechanism_rows'),
      training_path=[r for s in results['set_sizes'] for r in s.get('path_rows', [])],
      timings=results.get('provenance', {}).get('timings', []))
  return {k: (list(dict.fromkeys(c for r in v for c in r)), v) for k, v in tables.items() if v}


def write_report(config, workdir: str, timings: dict, started: float) -> str:
  """Collects, draws and renders; writes DIR/report/index.html and its CSVs; returns the path."""
  out = epath.Path(workdir) / REPORT_DIR
  out.mkdir(parents=True, exist_ok=True)
  results = collect(config, workdir)
  results['heldout_fraction_text'] = f'{float(config.report.heldout_fraction):g} of'
  results['provenance'] = provenance(config, timings, started)
  made = make_figures(results, workdir, os.fspath(out / 'figures'))
  figure_bytes = {section: [(caption, epath.Path(path).read_bytes()) for caption, path in items]
                  for section, items in made.items()}
  names = {}
  for name, (columns, rows) in csv_tables(results).items():
    names[name] = f'{name}.csv'
    files.write_csv(out / names[name], columns, rows)
  (out / 'results.json').write_text(json.dumps(results, indent=1, default=_json_default))
  path = out / 'index.html'
  path.write_text(render(results, figure_bytes, names))
  return os.fspath(path)


def _json_default(value):
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)
