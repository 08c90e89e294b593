"""A BNS fit's folder: `fit.json` (spec, labels, settings, info), `samples.npz` (the posterior
draws) and, for SVI, `guide_params.npz`; local or cloud paths (etils.epath)."""

from __future__ import annotations

import io
import json

from etils import epath
import numpy as np

from rnn_behaviour.behaviour import bns as bns_lib


def save(fit_: bns_lib.BNSFit, directory: str, config: dict | None = None) -> str:
  """Writes fit.json, samples.npz and (SVI) guide_params.npz into `directory` (local or cloud)."""
  folder = epath.Path(directory)
  folder.mkdir(parents=True, exist_ok=True)
  meta = dict(spec=fit_.spec.to_json(), set_sizes=list(fit_.labels.set_sizes),
              subjects=list(fit_.labels.subjects), info=fit_.info, config=config or {})
  # fit.json last: a fit.json present means the arrays beside it were written whole (a run
  # killed while saving leaves no fit.json, so a rerun refits instead of reading half a fit).
  (folder / 'fit.json').unlink(missing_ok=True)
  _write_npz(folder / 'samples.npz', fit_.samples)
  if fit_.guide_params is not None:
    _write_npz(folder / 'guide_params.npz',
               {k: np.asarray(v) for k, v in fit_.guide_params.items()})
  (folder / 'fit.json').write_text(json.dumps(meta, indent=2, default=str))
  return directory


def _write_npz(path: epath.Path, arrays: dict) -> None:
  # Built in memory: a cloud file object cannot seek back, which zip writing may want.
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  path.write_bytes(buffer.getvalue())


def _read_npz(path: epath.Path) -> dict:
  # np.load of an .npz reads lazily from its file: the bytes are read whole first.
  with np.load(io.BytesIO(path.read_bytes())) as z:
    return {k: z[k] for k in z.files}


def load(directory: str) -> bns_lib.BNSFit:
  """Reads a fit written by `save`."""
  folder = epath.Path(directory)
  path = folder / 'fit.json'
  if not path.exists():
    raise FileNotFoundError(f'{path}: no saved BNS fit here (run --mode=fit_behaviour first)')
  meta = json.loads(path.read_text())
  samples = _read_npz(folder / 'samples.npz')
  guide_path = folder / 'guide_params.npz'
  guide_params = _read_npz(guide_path) if guide_path.exists() else None
  labels = bns_lib.Labels(set_sizes=tuple(int(s) for s in meta['set_sizes']),
                  subjects=tuple(str(s) for s in meta['subjects']))
  info = dict(meta.get('info', {}), config=meta.get('config', {}))
  return bns_lib.BNSFit(spec=bns_lib.BNSSpec.from_json(meta['spec']), labels=labels,
                        samples=samples, info=info, guide_params=guide_params)
