"""Every notebook in colab/ runs top to bottom at tiny sizes, as a person would run it.

The parameters are injected as papermill does: a cell of assignments right after the cell
tagged `parameters`. The kernel runs in colab/ (so the notebooks find this checkout) and any
error in any cell fails the test.
"""

import copy
import glob
import os

import pytest

from tests import conftest
from tests import tiny
from tests.tiny import compilation_cache  # pylint: disable=unused-import  (a fixture)

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

COLAB = os.path.join(conftest.REPO_ROOT, 'colab')
BAYS = os.path.join(conftest.SHARED_DATA, 'bays2009', 'bays_data.mat')
TRAIN_TINY = {k: v for k, v in tiny.overrides().items() if not k.startswith('eval.')}
EVAL_TINY = dict(EVAL_DISPLAYS=8, EVAL_SAMPLES=16, BNS_SVI_STEPS=0)


def tiny_parameters(name: str, workdir: str) -> dict:
  """Each notebook's parameters at sizes that run in seconds."""
  overrides = dict(TRAIN_TINY, **{'eval.num_plot_displays': 2})
  if name == 'quickstart':
    return dict(WORKDIR=workdir, NUM_STEPS=4, ANALYSIS_SAMPLES=4, **EVAL_TINY,
                CONFIG_OVERRIDES=overrides)
  if name == 'mechanisms':
    return dict(WORKDIR=workdir, NUM_STEPS=4, NUM_BINS=4, SAMPLES_PER_DISPLAY=4,
                NUM_BOOTSTRAP=4, NUM_SHUFFLES=2, FIXED_POINT_STARTS=4, PAIR_ROTATIONS=1,
                REPORT_VALUES=6, SWAP_DISPLAYS=16, CONFIG_OVERRIDES=overrides)
  if name == 'your_data':
    return dict(DATA_PATH=BAYS, WORKDIR=workdir, FIT_SVI_STEPS=20, CV_FOLDS=0, NUM_STEPS=4,
                SAMPLES_PER_TRIAL=2, REPORT_SELECTION_STEPS=2, **EVAL_TINY,
                CONFIG_OVERRIDES=dict(overrides, **{
                    'data.set_sizes': [2], 'data.subjects': ['1', '2'],
                    'fit.num_posterior_samples': 20, 'fit.mixture_models': ['three_component'],
                    'fit.ppc_draws': 5, 'fit.num_fourier': 2, 'fit.guide': 'normal'}))
  raise KeyError(f'no tiny parameters for colab/{name}.ipynb: add them here')


def inject_parameters(notebook, parameters: dict):
  """A copy of the notebook with a cell of `parameters` after its `parameters`-tagged cell."""
  notebook = copy.deepcopy(notebook)
  tagged = [i for i, cell in enumerate(notebook.cells)
            if 'parameters' in cell.get('metadata', {}).get('tags', [])]
  assert len(tagged) == 1, 'a notebook needs exactly one cell tagged `parameters`'
  source = '\n'.join(f'{name} = {value!r}' for name, value in parameters.items())
  cell = nbformat.v4.new_code_cell(source)
  cell.metadata['tags'] = ['injected-parameters']
  notebook.cells.insert(tagged[0] + 1, cell)
  return notebook


def _notebook_names():
  return sorted(os.path.basename(p)[:-len('.ipynb')]
                for p in glob.glob(os.path.join(COLAB, '*.ipynb')))


def test_every_notebook_has_tiny_parameters():
  for name in _notebook_names():
    notebook = nbformat.read(os.path.join(COLAB, f'{name}.ipynb'), as_version=4)
    parameters = inject_parameters(notebook, {}).cells   # Exactly one tagged cell.
    declared = {line.split('=')[0].strip() for cell in parameters
                if 'parameters' in cell.metadata.get('tags', [])
                for line in cell.source.splitlines() if '=' in line and line[0].isupper()}
    assert set(tiny_parameters(name, '/tmp/x')) <= declared, name


# Slow: a kernel per notebook, each paying JAX's start-up and compilation (1-3 min on 2 cores).
# tests/test_end_to_end_fast.py calls the functions the cells call, on the session's fixtures.
@pytest.mark.slow
@pytest.mark.parametrize('name', _notebook_names())
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch, compilation_cache):
  if name == 'your_data' and not os.path.exists(BAYS):
    pytest.skip(f'no {BAYS}')
  for key, value in tiny.compilation_cache_env(compilation_cache).items():
    monkeypatch.setenv(key, value)       # The kernel inherits this process's environment.
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  notebook = nbformat.read(os.path.join(COLAB, f'{name}.ipynb'), as_version=4)
  notebook = inject_parameters(notebook, tiny_parameters(name, str(tmp_path / 'run')))
  client = nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3',
                                   resources={'metadata': {'path': COLAB}})
  client.execute()                       # Raises CellExecutionError on any error.
  errors = [out for cell in notebook.cells if cell.cell_type == 'code'
            for out in cell.get('outputs', []) if out.get('output_type') == 'error']
  assert not errors
  images = [out for cell in notebook.cells if cell.cell_type == 'code'
            for out in cell.get('outputs', []) if 'image/png' in out.get('data', {})]
  assert len(images) >= 3, 'the notebook showed too few figures'
  nbformat.write(notebook, str(tmp_path / f'{name}.executed.ipynb'))
