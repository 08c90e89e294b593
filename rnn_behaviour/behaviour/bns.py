"""BNS: the Bayesian non-parametric swap model in NumPyro (METHOD sec. 2).

For a trial with cued item k and non-targets j, let dc_j = wrap(c_j - c_k) (cue distance) and
dr_j = wrap(r_j - r_k) (report distance). The mixture weights over (guess, target,
non-targets) are

  softmax([u, 0, f(d_1), ..., f(d_{N-1})]),

u the guess logit, f the swap function of the cue distance, the report distance, or both
(the torus). A remembered item j is reported with noise around r_j: von Mises vM(0, kappa), or
a wrapped symmetric alpha-stable law with characteristic function exp(-|gamma t|^alpha)
(alpha = 2: wrapped normal of SD sqrt(2) gamma; alpha = 1: wrapped Cauchy).

Swap-function prior. f(d) = mu + g(d), g ~ GP(0, s^2 k(d - d')), with the periodic kernel
k(t) = exp((cos t - 1) / l^2) (~ exp(-t^2 / (2 l^2)) at small t). A stationary kernel on the
circle has the Fourier expansion k(t) = sum_m q_m cos(m t), so

  g(d) = s sum_{m=0}^{M} sqrt(q_m) (a_m cos(m d) + b_m sin(m d)),  a_m, b_m ~ N(0, 1)

has exactly this covariance when M -> inf; truncating at M = `num_fourier` drops only the
exponentially small high-frequency weights. The q_m are computed by a discrete Fourier transform
of k on a fine grid (differentiable in l, so l and s are learnt with their priors). With
`symmetric=True` (default, f(d) = f(-d)) only cosine terms are kept. On the torus the basis is
the tensor product of the two circles' bases, with weights q^cue_m q^report_n and a length scale
per dimension. The coefficients are sampled non-centred (a_m ~ N(0, 1)), which suits both SVI
and NUTS.

Priors (defaults of `BNSSpec`): mu ~ N(-2, 1.5^2); l ~ LogNormal(log 1, 0.5^2) per dimension;
s ~ HalfNormal(2); u ~ N(-2.5, 1.5^2); log kappa ~ N(log 8, 1); wrapped stable:
log gamma ~ N(log 0.3, 1), alpha ~ Uniform(0.5, 2).

Indexing. Swap functions (mu, coefficients) are per set size, or one shared; the guess logit
and the emission parameters are per set size (or shared) and, with `subject_effects`, per
subject too. Set size 1 has no non-targets, so its swap function is never fitted nor reported.

The model observes the responses at its sample site 'response' (a `MixtureGeneral` of the
uniform guess and each item's emission, `response_distribution`), so NumPyro's own tools do the
rest: `Predictive` draws posterior-predictive replicates (`predictive_responses`) and
`numpyro.infer.util.log_likelihood` gives per-trial log densities (`BNSFit.trial_log_likelihood`,
the held-out lpd of `bns_cv.cross_validate_folds`).

Fitting: SVI (default; svi.py runs it in chunks, checks divergence, restarts) or NUTS. A fit is
saved as a folder: `fit.json` (spec, labels, settings), `samples.npz` (posterior draws) and, for
SVI, `guide_params.npz`. The wrapped stable law lives in stable.py, cross-validation in bns_cv.py.
"""

from __future__ import annotations

import dataclasses
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions import constraints
from numpyro.infer import autoguide
from numpyro.infer.util import log_likelihood

from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import stable
from rnn_behaviour.behaviour import svi as svi_lib

DIMENSIONS = ('cue', 'report', 'torus')
EMISSIONS = ('von_mises', 'wrapped_stable')
INFERENCES = ('svi', 'nuts')
_KERNEL_GRID = 256


@dataclasses.dataclass(frozen=True)
class BNSSpec:
  """Model structure and priors. Everything a saved fit needs to rebuild its functions."""
  dimension: str = 'cue'
  num_fourier: int = 6
  symmetric: bool = True
  emission: str = 'von_mises'
  shared_across_set_sizes: bool = False
  subject_effects: bool = False
  stable_terms: int = 64            # Fourier terms of the wrapped-stable density.
  swap_mean_prior: tuple = (-2.0, 1.5)
  guess_logit_prior: tuple = (-2.5, 1.5)
  log_kappa_prior: tuple = (float(np.log(8.0)), 1.0)
  log_gamma_prior: tuple = (float(np.log(0.3)), 1.0)
  alpha_range: tuple = (0.5, 2.0)
  log_lengthscale_prior: tuple = (0.0, 0.5)
  amplitude_scale: float = 2.0

  def __post_init__(self):
    if self.dimension not in DIMENSIONS:
      raise ValueError(f'BNS dimension must be one of {DIMENSIONS}, got {self.dimension!r}')
    if self.emission not in EMISSIONS:
      raise ValueError(f'BNS emission must be one of {EMISSIONS}, got {self.emission!r}')
    if self.num_fourier < 0:
      raise ValueError(f'num_fourier must be >= 0, got {self.num_fourier}')

  @property
  def num_dims(self) -> int:
    return 2 if self.dimension == 'torus' else 1

  @property
  def circle_basis_size(self) -> int:
    return self.num_fourier + 1 if self.symmetric else 2 * self.num_fourier + 1

  @property
  def basis_size(self) -> int:
    return self.circle_basis_size ** self.num_dims

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict) -> 'BNSSpec':
    d = dict(d)
    for k, v in d.items():
      if isinstance(v, list):
        d[k] = tuple(v)
    return cls(**d)


# --------------------------------------------------------------------------------------------
# Fourier-basis GP
# --------------------------------------------------------------------------------------------


def circle_features(distance, num_fourier: int, symmetric: bool):
  """Fourier features of distances, (..., M + 1) [cos(m d)] or (..., 2M + 1) [cos, sin]."""
  m = jnp.arange(num_fourier + 1, dtype=jnp.float32)
  phase = distance[..., None] * m
  if symmetric:
    return jnp.cos(phase)
  return jnp.concatenate([jnp.cos(phase), jnp.sin(phase[..., 1:])], axis=-1)


def spectral_weights(lengthscale, num_fourier: int):
  """q_m, m = 0..M, of k(t) = exp((cos t - 1) / l^2) = sum_m q_m cos(m t).

  By a real DFT of k on a 256-point grid (aliasing error ~ q_256, negligible for l > 0.1).
  """
  t = jnp.arange(_KERNEL_GRID) * (2 * jnp.pi / _KERNEL_GRID)
  k = jnp.exp((jnp.cos(t) - 1.0) / jnp.square(lengthscale)[..., None])
  c = jnp.fft.rfft(k, axis=-1).real[..., :num_fourier + 1] / _KERNEL_GRID
  # Complex coefficients c_m = c_{-m}; cos(m t) collects both: q_0 = c_0, q_m = 2 c_m.
  q = c * jnp.where(jnp.arange(num_fourier + 1) == 0, 1.0, 2.0)
  # Floored: round-off makes far-tail weights ~0 or negative, and sqrt(q) would then have an
  # infinite gradient (NaN after multiplying by zero). 1e-9 is far below any weight that matters.
  return jnp.maximum(q, 1e-9)


def circle_weights(lengthscale, spec: BNSSpec):
  """Prior variances of one circle's basis coefficients (matching `circle_features`)."""
  q = spectral_weights(lengthscale, spec.num_fourier)
  return q if spec.symmetric else jnp.concatenate([q, q[..., 1:]], axis=-1)


def basis_features(spec: BNSSpec, cue_distance, report_distance):
  """Basis features of the swap function's input, (..., B)."""
  feats = lambda d: circle_features(d, spec.num_fourier, spec.symmetric)
  if spec.dimension == 'cue':
    return feats(cue_distance)
  if spec.dimension == 'report':
    return feats(report_distance)
  fc, fr = feats(cue_distance), feats(report_distance)
  return (fc[..., :, None] * fr[..., None, :]).reshape(fc.shape[:-1] + (-1,))


def basis_weights(spec: BNSSpec, lengthscales):
  """(B,) prior variances (up to s^2) of the basis coefficients; lengthscales (num_dims,)."""
  if spec.num_dims == 1:
    return circle_weights(lengthscales[0], spec)
  wc, wr = circle_weights(lengthscales[0], spec), circle_weights(lengthscales[1], spec)
  return (wc[:, None] * wr[None, :]).reshape(-1)


# --------------------------------------------------------------------------------------------
# Data and likelihood
# --------------------------------------------------------------------------------------------


@flax.struct.dataclass
class BNSData:
  """Trials as the model consumes them; J = N_max - 1 non-target slots.

  response: (T,) y, the observed site. centres: (T, 1 + J) report features r_k, r_j of the
  target and the non-targets (0 at padding). features: (T, J, B) swap-function basis at each
  non-target's distances. nontarget_mask: (T, J). function_index: (T,) which swap function.
  group_index: (T,) which guess logit / emission parameters.
  """
  response: jnp.ndarray
  centres: jnp.ndarray
  features: jnp.ndarray
  nontarget_mask: jnp.ndarray
  function_index: jnp.ndarray
  group_index: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class Labels:
  """What the swap-function and group indices mean."""
  set_sizes: tuple        # Set sizes of the fitted data, sorted.
  subjects: tuple         # Subjects of the fitted data (for subject_effects).

  def num_functions(self, spec: BNSSpec) -> int:
    return 1 if spec.shared_across_set_sizes else len(self.set_sizes)

  def num_groups(self, spec: BNSSpec) -> int:
    per_subject = len(self.subjects) if spec.subject_effects else 1
    return per_subject * self.num_functions(spec)

  def function_of(self, spec: BNSSpec, set_size: int) -> int:
    if spec.shared_across_set_sizes:
      return 0
    if set_size not in self.set_sizes:
      raise ValueError(f'no swap function fitted for set size {set_size}; the fit has set sizes '
                       f'{list(self.set_sizes)} and shared_across_set_sizes=False')
    return self.set_sizes.index(set_size)

  def groups_of(self, spec: BNSSpec, set_size: int) -> np.ndarray:
    """Group indices of every subject at this set size (all subjects pooled if no effects)."""
    f = self.function_of(spec, set_size)
    n_subj = len(self.subjects) if spec.subject_effects else 1
    return np.arange(n_subj) * self.num_functions(spec) + f


def labels_of(table: data_lib.TrialTable) -> Labels:
  return Labels(set_sizes=tuple(table.set_sizes()), subjects=tuple(table.subjects()))


def make_data(spec: BNSSpec, table: data_lib.TrialTable, labels: Labels | None = None):
  """The model's view of a trial table; returns (BNSData, Labels)."""
  labels = labels or labels_of(table)
  dc, dr, nt_report, mask = table.nontargets()
  if mask.shape[1] == 0:  # Only set size 1: keep one always-masked slot so shapes stay valid.
    dc, dr, nt_report, mask = (np.zeros((len(table), 1)),) * 3 + (np.zeros((len(table), 1),
                                                                           bool),)
  fn = np.array([labels.function_of(spec, int(n)) for n in table.set_size])
  if spec.subject_effects:
    lookup = {s: i for i, s in enumerate(labels.subjects)}
    missing = sorted(set(table.subject.tolist()) - set(lookup))
    if missing:
      raise ValueError(f'subjects {missing} not in the fit (subject_effects=True)')
    subj = np.array([lookup[s] for s in table.subject])
  else:
    subj = np.zeros(len(table), np.int64)
  group = subj * labels.num_functions(spec) + fn
  features = basis_features(spec, jnp.asarray(dc, jnp.float32), jnp.asarray(dr, jnp.float32))
  centres = np.concatenate([table.target_report()[:, None], np.where(mask, nt_report, 0.0)], 1)
  return BNSData(response=jnp.asarray(table.response, jnp.float32),
                 centres=jnp.asarray(centres, jnp.float32),
                 features=features * jnp.asarray(mask[..., None], jnp.float32),
                 nontarget_mask=jnp.asarray(mask), function_index=jnp.asarray(fn),
                 group_index=jnp.asarray(group)), labels


def response_distribution(params, d: BNSData, spec: BNSSpec):
  """Every trial's response distribution under one parameter set: a `MixtureGeneral` of the
  uniform guess, the target's and the non-targets' emissions, batch shape (T,)."""
  log_w = trial_log_weights(params, d)                                  # (T, 2 + J)
  num_trials = d.response.shape[0]
  guess = dist.Uniform(-jnp.pi, jnp.pi).expand([num_trials])
  if spec.emission == 'von_mises':
    kappa = params['kappa'][d.group_index]
    emit = lambda loc: dist.VonMises(loc, kappa)
  else:
    gamma, alpha = params['gamma'][d.group_index], params['alpha'][d.group_index]
    emit = lambda loc: stable.WrappedStable(loc, gamma, alpha, spec.stable_terms)
  components = [guess] + [emit(d.centres[:, j]) for j in range(d.centres.shape[1])]
  # Padded non-target slots have weight exactly 0 (logit -inf), which argument validation
  # would reject as not a real number.
  return dist.MixtureGeneral(dist.Categorical(logits=log_w, validate_args=False), components,
                             support=constraints.circular)


def trial_log_weights(params, d: BNSData):
  """log mixture weights of every trial, (T, 2 + J): guess, target, non-targets (-inf pads)."""
  mu = params['swap_mean'][d.function_index]
  coef = params['coef'][d.function_index]                    # (T, B)
  f = mu[:, None] + jnp.einsum('tjb,tb->tj', d.features, coef)
  u = params['guess_logit'][d.group_index]
  logits = jnp.concatenate(
      [u[:, None], jnp.zeros_like(u)[:, None], jnp.where(d.nontarget_mask, f, -jnp.inf)], -1)
  return jax.nn.log_softmax(logits, axis=-1)


def build_params(latent, spec: BNSSpec):
  """Model parameters from the latent (sampled) sites; works on batches of draws via vmap."""
  weights = basis_weights(spec, latent['lengthscale'])
  coef = latent['amplitude'] * jnp.sqrt(weights) * latent['coef_raw']
  out = dict(swap_mean=latent['swap_mean'], coef=coef, guess_logit=latent['guess_logit'],
             lengthscale=latent['lengthscale'], amplitude=latent['amplitude'])
  if spec.emission == 'von_mises':
    out['kappa'] = latent['kappa']
  else:
    out['gamma'], out['alpha'] = latent['gamma'], latent['alpha']
  return out


def model(d: BNSData, spec: BNSSpec, num_functions: int, num_groups: int, trial_weight=None,
          observe: bool = True):
  """The NumPyro model; the responses are its observed site 'response' (T,).

  trial_weight (T,) 0/1 selects the trials that count (k-fold CV). observe=False leaves the
  responses unobserved, so that `Predictive` draws them (posterior-predictive replicates).
  """
  latent = {}
  latent['lengthscale'] = numpyro.sample(
      'lengthscale', dist.LogNormal(*spec.log_lengthscale_prior).expand([spec.num_dims])
      .to_event(1))
  latent['amplitude'] = numpyro.sample('amplitude', dist.HalfNormal(spec.amplitude_scale))
  with numpyro.plate('functions', num_functions, dim=-1):
    latent['swap_mean'] = numpyro.sample('swap_mean', dist.Normal(*spec.swap_mean_prior))
    latent['coef_raw'] = numpyro.sample(
        'coef_raw', dist.Normal(0.0, 1.0).expand([spec.basis_size]).to_event(1))
  with numpyro.plate('groups', num_groups, dim=-1):
    latent['guess_logit'] = numpyro.sample('guess_logit', dist.Normal(*spec.guess_logit_prior))
    if spec.emission == 'von_mises':
      latent['kappa'] = numpyro.sample('kappa', dist.LogNormal(*spec.log_kappa_prior))
    else:
      latent['gamma'] = numpyro.sample('gamma', dist.LogNormal(*spec.log_gamma_prior))
      latent['alpha'] = numpyro.sample('alpha', dist.Uniform(*spec.alpha_range))
  responses = response_distribution(build_params(latent, spec), d, spec)
  # k-fold CV: held-out trials are masked out of the likelihood (their log density is 0).
  counted = True if trial_weight is None else trial_weight > 0
  with numpyro.plate('trials', d.response.shape[0]), numpyro.handlers.mask(mask=counted):
    numpyro.sample('response', responses, obs=d.response if observe else None)


LATENT_SITES = ('lengthscale', 'amplitude', 'swap_mean', 'coef_raw', 'guess_logit', 'kappa',
                'gamma', 'alpha')


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BNSFit:
  """A fitted BNS: spec, labels and S posterior draws of every parameter (numpy arrays).

  samples: swap_mean (S, F), coef (S, F, B), guess_logit (S, G), kappa (S, G) or gamma,
  alpha (S, G), lengthscale (S, num_dims), amplitude (S,), coef_raw (S, F, B) (the latent
  coefficients; absent from fits saved before it was kept, see `latent_samples`).
  """
  spec: BNSSpec
  labels: Labels
  samples: dict
  info: dict
  guide_params: dict | None = None

  @property
  def num_samples(self) -> int:
    return int(self.samples['swap_mean'].shape[0])

  def swap_logit(self, set_size: int, cue_distance, report_distance):
    """f at given distances for every draw, (S, ...) (jnp)."""
    fi = self.labels.function_of(self.spec, set_size)
    feats = basis_features(self.spec, jnp.asarray(cue_distance, jnp.float32),
                           jnp.asarray(report_distance, jnp.float32))
    coef = jnp.asarray(self.samples['coef'][:, fi])
    mean = jnp.asarray(self.samples['swap_mean'][:, fi])
    return mean.reshape((-1,) + (1,) * (feats.ndim - 1)) + jnp.einsum('...b,sb->s...', feats,
                                                                       coef)

  def latent_samples(self) -> dict:
    """The draws of the model's latent sites (`LATENT_SITES`), what `Predictive` and
    `log_likelihood` substitute into `model`. Fits saved before `coef_raw` was kept get it back
    from coef = amplitude sqrt(q(lengthscale)) coef_raw (the weights are floored > 0)."""
    out = {k: jnp.asarray(v) for k, v in self.samples.items() if k in LATENT_SITES}
    if 'coef_raw' not in out:
      weights = jax.vmap(lambda l: basis_weights(self.spec, l))(out['lengthscale'])  # (S, B)
      scale = out['amplitude'][:, None, None] * jnp.sqrt(weights)[:, None, :]
      out['coef_raw'] = jnp.asarray(self.samples['coef']) / scale
    return out

  def bound_model(self):
    """`model` with this fit's spec and index sizes (`bound_model`)."""
    return bound_model(self.spec, self.labels)

  def trial_log_likelihood(self, table: data_lib.TrialTable):
    """(S, T) log p(y_t | draw s): NumPyro's `log_likelihood` at the 'response' site."""
    d, _ = make_data(self.spec, table, self.labels)
    return heldout_log_likelihood(self.bound_model(), self.latent_samples(), d)


def bound_model(spec: BNSSpec, labels: Labels):
  """`model` with `spec` and the index sizes of `labels`: f(d, trial_weight=None, observe=True)."""
  nf, ng = labels.num_functions(spec), labels.num_groups(spec)
  return lambda d, trial_weight=None, observe=True: model(d, spec, nf, ng, trial_weight, observe)


def heldout_log_likelihood(bound_model, latent, d: BNSData, batch_size: int = 16):
  """(S, T) log p(y_t | draw s) by `numpyro.infer.util.log_likelihood`, `batch_size` draws at
  a time (bounds memory on large tables)."""
  num = jax.tree_util.tree_leaves(latent)[0].shape[0]
  pad = -num % batch_size
  chunks = jax.tree_util.tree_map(
      lambda v: jnp.concatenate([v, jnp.repeat(v[-1:], pad, 0)]).reshape(
          (-1, batch_size) + v.shape[1:]), latent)
  ll = jax.lax.map(lambda c: log_likelihood(bound_model, c, d, parallel=True)['response'],
                   chunks)
  return ll.reshape((-1,) + ll.shape[2:])[:num]


def predictive_responses(key, fit_: 'BNSFit', table: data_lib.TrialTable,
                         num_draws: int = 200) -> np.ndarray:
  """Posterior-predictive replicate responses on the table's own trials, (R, T) radians.

  NumPyro's `Predictive` on `model` with the responses unobserved: replicate r uses one
  posterior draw for every trial (so statistics computed per replicate carry the posterior's
  uncertainty) and each trial's own subject and set size (its own guess logit and emission),
  unlike `surrogate`, which serves new displays of unknown subjects. Draws are taken in order,
  cycling if `num_draws` exceeds the fit's.
  """
  d, _ = make_data(fit_.spec, table, fit_.labels)
  idx = np.arange(num_draws) % fit_.num_samples
  latent = {k: v[idx] for k, v in fit_.latent_samples().items()}
  predictive = numpyro.infer.Predictive(fit_.bound_model(), posterior_samples=latent,
                                        return_sites=['response'], batch_ndims=1)
  return np.asarray(predictive(key, d, observe=False)['response'], np.float64)


def guide_of(spec_model, guide: str):
  """The SVI guide config.fit.guide names: a full-rank ('mvn') or diagonal ('normal') normal."""
  if guide == 'mvn':
    return autoguide.AutoMultivariateNormal(spec_model,
                                            init_loc_fn=numpyro.infer.init_to_median)
  if guide == 'normal':
    return autoguide.AutoNormal(spec_model, init_loc_fn=numpyro.infer.init_to_median)
  raise ValueError(f"guide must be 'mvn' or 'normal', got {guide!r}")


def svi_parts(spec, labels, guide, learning_rate):
  """(SVI, guide) of the BNS model of `spec` over `labels`' functions and groups."""
  nf, ng = labels.num_functions(spec), labels.num_groups(spec)

  def bound(d, trial_weight):
    return model(d, spec, nf, ng, trial_weight)

  g = guide_of(bound, guide)
  # The step size lives in the optimiser state (inject_hyperparams), so a restart at a lower
  # step size compiles to the same program (see `svi.with_learning_rate`).
  optim = optax.chain(optax.clip_by_global_norm(10.0),
                      optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate))
  svi = numpyro.infer.SVI(bound, g, optim, numpyro.infer.Trace_ELBO())
  return svi, g


def run_chunks(svi, d: BNSData, chunk: int):
  """A jitted `(state, trial_weight) -> (state, losses (..., chunk))` of `svi` on `d`.

  The data is an argument of the program, not a constant in it: fits of other data of the same
  shape compile to the same program (a hit in JAX's compilation cache)."""
  run = jax.jit(lambda state, data, w: svi_lib.run_svi(svi, state, data, w, chunk))
  return lambda state, w: run(state, d, w)


def fit(key, table: data_lib.TrialTable, spec: BNSSpec = BNSSpec(), *, inference: str = 'svi',
        num_steps: int = 2000, learning_rate: float = 0.02, num_samples: int = 500,
        guide: str = 'mvn', num_warmup: int = 500, labels: Labels | None = None,
        max_restarts: int = 2, restart_lr_factor: float = 0.3, tick=None) -> BNSFit:
  """Fits BNS to a trial table.

  Args:
    key: PRNG key.
    table: trials (any mix of set sizes / subjects).
    spec: model structure and priors.
    inference: 'svi' (ELBO, `guide` 'mvn' or 'normal', Adam) or 'nuts'.
    num_steps, learning_rate: SVI optimisation.
    num_samples: posterior draws kept (SVI: drawn from the guide; NUTS: after warm-up).
    num_warmup: NUTS warm-up.
    labels: index meaning (default: from the table).
    max_restarts, restart_lr_factor: SVI that diverges (`svi.svi_divergence`) is restarted from a
      new initialisation at `restart_lr_factor` times the step size, up to `max_restarts`
      times; `info['svi_attempts']` records every try.
    tick: optional progress callable (a `progress.Throttle`) for SVI progress lines.

  Returns:
    BNSFit with `num_samples` draws; `info` holds timing and the final ELBO loss.

  Raises:
    FloatingPointError when SVI diverges on every try.
  """
  if inference not in INFERENCES:
    raise ValueError(f'inference must be one of {INFERENCES}, got {inference!r}')
  d, labels = make_data(spec, table, labels)
  key_fit, key_post = jax.random.split(key)
  start = time.time()
  info = dict(inference=inference, num_trials=len(table))
  guide_params = None
  if inference == 'svi':
    chunk = svi_lib.chunk_length(num_steps)
    svi, state, losses, attempts = svi_lib.svi_with_restarts(
        key_fit, lambda: svi_parts(spec, labels, guide, learning_rate)[0],
        lambda svi: run_chunks(svi, d, chunk), d, None, num_steps, learning_rate, len(table),
        max_restarts, restart_lr_factor, tick, label='BNS fit')
    g = svi.guide
    guide_params = jax.device_get(svi.get_params(state))
    # One program, like the init (svi.init_svi): op by op, each op would compile on its own.
    latent = jax.jit(lambda k, p: g.sample_posterior(k, p, sample_shape=(num_samples,)))(
        key_post, guide_params)
    info.update(num_steps=num_steps, learning_rate=attempts[-1]['learning_rate'], guide=guide,
                final_loss=float(losses[-100:].mean()), initial_loss=float(losses[0]),
                svi_attempts=attempts)
  else:
    nf, ng = labels.num_functions(spec), labels.num_groups(spec)
    bound = lambda d: model(d, spec, nf, ng)
    mcmc = numpyro.infer.MCMC(numpyro.infer.NUTS(bound), num_warmup=num_warmup,
                              num_samples=num_samples, progress_bar=False)
    mcmc.run(key_fit, d, extra_fields=('diverging',))
    latent = mcmc.get_samples()
    div = mcmc.get_extra_fields().get('diverging')
    info.update(num_warmup=num_warmup, divergences=int(np.sum(div)) if div is not None else -1)
  latent = {k: v for k, v in latent.items() if k in LATENT_SITES}
  samples = dict(jax.jit(jax.vmap(lambda lat: build_params(lat, spec)))(latent),
                 coef_raw=latent['coef_raw'])
  samples = {k: np.asarray(v) for k, v in jax.device_get(samples).items()}
  info['fit_seconds'] = time.time() - start
  return BNSFit(spec=spec, labels=labels, samples=samples, info=info,
                guide_params=guide_params)


# --------------------------------------------------------------------------------------------
# Swap-function grid
# --------------------------------------------------------------------------------------------


SWAP_COLUMNS = ('set_size', 'dimension', 'distance', 'logit_mean', 'logit_lower', 'logit_upper')


def swap_function_grid(fit_: BNSFit, num_points: int = 61, band: float = 0.9):
  """The fitted swap function on a grid, rows for `SWAP_COLUMNS`.

  One-dimensional fits: f on distances in [0, pi] (symmetric) or [-pi, pi]. Torus fits: for
  `dimension='cue'` the logit averaged over report distances uniform on the circle (and vice
  versa): the swap function's main effect. Mean and the central `band` interval over draws.
  Set size 1 (no non-targets) is skipped.
  """
  lo_q, hi_q = (1 - band) / 2, 1 - (1 - band) / 2
  start = 0.0 if fit_.spec.symmetric else -np.pi
  grid = np.linspace(start, np.pi, num_points)
  other = np.linspace(-np.pi, np.pi, 64, endpoint=False)
  rows = []
  sizes = [n for n in fit_.labels.set_sizes if n > 1]
  dims = ('cue', 'report') if fit_.spec.dimension == 'torus' else (fit_.spec.dimension,)
  for n in sizes:
    for dim in dims:
      if fit_.spec.dimension == 'torus':
        a, b = np.meshgrid(grid, other, indexing='ij')
        dc, dr = (a, b) if dim == 'cue' else (b, a)
        f = np.asarray(fit_.swap_logit(n, dc, dr)).mean(-1)          # (S, grid)
      else:
        f = np.asarray(fit_.swap_logit(n, grid, grid))
      mean, lo, hi = f.mean(0), np.quantile(f, lo_q, 0), np.quantile(f, hi_q, 0)
      for i, x in enumerate(grid):
        rows.append(dict(set_size=n, dimension=dim, distance=float(x),
                         logit_mean=float(mean[i]), logit_lower=float(lo[i]),
                         logit_upper=float(hi[i])))
  return rows


def spec_from_config(fit_config) -> BNSSpec:
  """BNSSpec from a config's `fit` block."""
  c = fit_config
  return BNSSpec(dimension=c.bns_dimension, num_fourier=int(c.num_fourier),
                 symmetric=bool(c.symmetric), emission=c.emission,
                 shared_across_set_sizes=bool(c.shared_across_set_sizes),
                 subject_effects=bool(c.subject_effects))
