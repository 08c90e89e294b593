"""The package's import graph: no circle, no floor importing a higher one, no import inside a
function except of optional heavy libraries, no private name used across modules.

Read from the source with `ast` (nothing is imported), so a new circle fails here first.
"""

import ast
import functools
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'rnn_behaviour'

# Floors, lowest first: a module may import its own floor or one below. The first match of a
# module's dotted name (without the package) wins.
FLOORS = (
    ('ground', ('errors', 'circular', 'logs', 'progress', 'workdir', 'files', 'metric_writers',
                'parallel', 'configs.choices')),
    ('behaviour and task', ('task', 'diffusion', 'behaviour', 'configs')),
    ('network', ('rnn', 'sampling', 'objectives')),
    ('trainer', ('train_step', 'checkpoints', 'warm_start', 'run_record', 'divergence',
                 'config_validation', 'train')),
    ('judging', ('evaluate', 'criteria', 'plots', 'analysis')),
    ('runs of runs', ('modes', 'main', 'curriculum', 'comparison', 'paper_experiment',
                      'lab_report')),
)
# What a function may import for itself: libraries a run may never need (figures, TensorBoard,
# notebooks), and the package's own figure module, which loads matplotlib.
HEAVY = ('matplotlib', 'tensorboardX', 'tqdm', 'ipywidgets', 'papermill', 'rnn_behaviour.plots')


def _modules() -> dict:
  """{dotted module name: parsed tree} of every file of the package."""
  found = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    found[name] = ast.parse(path.read_text(), filename=str(path))
  return found


MODULES = _modules()


def _imports(tree) -> list[tuple[str, str | None, ast.AST]]:
  """(imported module, alias bound or None, node) of every import of the package's modules
  (`from a import b` names a.b when that is a module)."""
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(a.name, a.asname, node) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      for a in node.names:
        sub = f'{node.module}.{a.name}'
        out.append((sub, a.asname or a.name, node) if sub in MODULES
                   else (node.module, None, node))
  return out


@functools.cache
def _graph() -> dict:
  return {m: {name for name, _, _ in _imports(t) if name in MODULES and name != m}
          for m, t in MODULES.items()}


def _floor(module: str) -> int:
  short = module.removeprefix('rnn_behaviour').lstrip('.')
  for level, (_, names) in enumerate(FLOORS):
    if any(short == n or short.startswith(n + '.') for n in names):
      return level
  raise AssertionError(f'{module} is on no floor: add it to FLOORS in {__file__}')


def test_no_import_circle():
  graph, state, circles = _graph(), {}, []

  def visit(module, path):
    state[module] = 'open'
    for target in sorted(graph[module]):
      if state.get(target) == 'open':
        circles.append(' -> '.join(path[path.index(target):] + [target]))
      elif target not in state:
        visit(target, path + [target])
    state[module] = 'done'

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])
  assert not circles, 'import circles:\n' + '\n'.join(circles)


@pytest.mark.parametrize('module', sorted(m for m in MODULES if m != 'rnn_behaviour'))
def test_no_floor_imports_a_higher_one(module):
  upward = [f'{module} ({FLOORS[_floor(module)][0]}) imports {t} ({FLOORS[_floor(t)][0]})'
            for t in sorted(_graph()[module])
            if t != 'rnn_behaviour' and _floor(t) > _floor(module)]
  assert not upward, '\n'.join(upward)


def test_imports_inside_functions_are_only_heavy_libraries():
  found = []
  for module, tree in MODULES.items():
    top = {id(node) for node in tree.body}
    for name, _, node in _imports(tree):
      if id(node) not in top and not any(name == h or name.startswith(h + '.') for h in HEAVY):
        found.append(f'{module}:{node.lineno} imports {name} inside a function')
  assert not found, '\n'.join(found)


def test_no_private_name_used_across_modules():
  found = []
  for module, tree in MODULES.items():
    aliases = {alias or name.split('.')[-1]: name for name, alias, _ in _imports(tree)
               if name in MODULES}
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module in MODULES:
        found += [f'{module}:{node.lineno} imports {node.module}.{a.name}' for a in node.names
                  if a.name.startswith('_') and not a.name.startswith('__')]
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
          and node.value.id in aliases and node.attr.startswith('_')
          and not node.attr.startswith('__')):
        found.append(f'{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}')
  assert not found, '\n'.join(found)
