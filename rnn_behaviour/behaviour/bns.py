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
the held-out lpd of `cross_validate_folds`).

Fitting: SVI (default; a multivariate-normal guide, ELBO, Adam; run by `SVI.run` in chunks
between which progress is shown and divergence checked) or NUTS. A fit is saved as a
folder: `fit.json` (spec, labels, settings), `samples.npz` (posterior draws of every parameter)
and, for SVI, `guide_params.npz`. `cross_validate` returns held-out log predictive densities by
k-fold CV, fitting all folds at once (vmapped SVI).
"""

from __future__ import annotations

import dataclasses
import io
import json
import time

from etils import epath
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

from rnn_behaviour import circular
from rnn_behaviour.behaviour import data as data_lib

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


def _stable_log_density(cos_table, gamma, alpha):
  """log of the wrapped symmetric stable density from its Fourier series.

  p(x) = (1 / 2 pi) (1 + 2 sum_{p=1}^P exp(-(gamma p)^alpha) cos(p x)); cos_table (..., P)
  holds cos(p x); gamma, alpha broadcast against (...). Truncation can make the series dip
  below zero far in the tails of very peaked laws; it is floored there.
  """
  p = jnp.arange(1, cos_table.shape[-1] + 1, dtype=jnp.float32)
  coef = jnp.exp(-jnp.power(gamma[..., None] * p, alpha[..., None]))
  dens = (1.0 + 2.0 * jnp.sum(coef * cos_table, axis=-1)) / (2 * jnp.pi)
  return jnp.log(jnp.maximum(dens, 1e-8))


class WrappedStable(dist.Distribution):
  """Wrapped symmetric alpha-stable law on the circle, characteristic function exp(-|gamma t|^a).

  Density by its Fourier series truncated at `num_terms` (see `_stable_log_density`);
  samples by Chambers-Mallows-Stuck, wrapped to [-pi, pi).
  """
  arg_constraints = {'loc': constraints.real, 'gamma': constraints.positive,
                     'alpha': constraints.interval(0.0, 2.0)}
  support = constraints.circular
  reparametrized_params = []

  def __init__(self, loc, gamma, alpha, num_terms: int = 64, *, validate_args=None):
    self.loc, self.gamma, self.alpha = jnp.broadcast_arrays(loc, gamma, alpha)
    self.num_terms = num_terms
    super().__init__(batch_shape=jnp.shape(self.loc), validate_args=validate_args)

  def sample(self, key, sample_shape=()):
    from rnn_behaviour.behaviour import surrogate  # pylint: disable=g-import-not-at-top
    shape = sample_shape + self.batch_shape
    noise = surrogate.sample_symmetric_stable(key, jnp.broadcast_to(self.alpha, shape),
                                              jnp.broadcast_to(self.gamma, shape))
    return circular.wrap(self.loc + noise)

  def log_prob(self, value):
    p = jnp.arange(1, self.num_terms + 1, dtype=jnp.float32)
    cos_table = jnp.cos((value - self.loc)[..., None] * p)
    return _stable_log_density(cos_table, self.gamma, self.alpha)

  pytree_data_fields = ('loc', 'gamma', 'alpha')
  pytree_aux_fields = ('num_terms',)


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
    emit = lambda loc: WrappedStable(loc, gamma, alpha, spec.stable_terms)
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
    """`model` with this fit's spec and index sizes: f(d, trial_weight=None, observe=True)."""
    nf, ng = self.labels.num_functions(self.spec), self.labels.num_groups(self.spec)
    return lambda d, trial_weight=None, observe=True: model(d, self.spec, nf, ng, trial_weight,
                                                            observe)

  def trial_log_likelihood(self, table: data_lib.TrialTable):
    """(S, T) log p(y_t | draw s): NumPyro's `log_likelihood` at the 'response' site."""
    d, _ = make_data(self.spec, table, self.labels)
    return heldout_log_likelihood(self.bound_model(), self.latent_samples(), d)


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


def _guide(spec_model, guide: str):
  if guide == 'mvn':
    return autoguide.AutoMultivariateNormal(spec_model,
                                            init_loc_fn=numpyro.infer.init_to_median)
  if guide == 'normal':
    return autoguide.AutoNormal(spec_model, init_loc_fn=numpyro.infer.init_to_median)
  raise ValueError(f"guide must be 'mvn' or 'normal', got {guide!r}")


def _svi_parts(spec, labels, guide, learning_rate):
  nf, ng = labels.num_functions(spec), labels.num_groups(spec)

  def bound(d, trial_weight):
    return model(d, spec, nf, ng, trial_weight)

  g = _guide(bound, guide)
  # The step size lives in the optimiser state (inject_hyperparams), so a restart at a lower
  # step size reuses the compiled update (see `_with_learning_rate`).
  optim = optax.chain(optax.clip_by_global_norm(10.0),
                      optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate))
  svi = numpyro.infer.SVI(bound, g, optim, numpyro.infer.Trace_ELBO())
  return svi, g


def _with_learning_rate(state, learning_rate: float):
  """An SVI state whose Adam step size is `learning_rate` (every fold's, if vmapped)."""
  old = optax.tree_utils.tree_get(state, 'learning_rate')
  return optax.tree_utils.tree_set(state, learning_rate=jnp.full_like(old, learning_rate))


def _run_svi(svi, state, d, trial_weight, num_steps):
  """`num_steps` SVI steps from `state` by `SVI.run` (no progress bar: a `lax.scan`, so it
  jits and vmaps over folds); returns (state, losses (num_steps,))."""
  result = svi.run(None, num_steps, d, trial_weight, progress_bar=False, init_state=state)
  return result.state, result.losses


def _chunk_length(num_steps: int, max_chunks: int = 20) -> int:
  """The largest divisor-based chunk so that num_steps splits into <= max_chunks equal parts.

  Equal chunks compile once; between chunks the host logs progress and stops early on NaN.
  """
  for n in range(min(max_chunks, num_steps), 0, -1):
    if num_steps % n == 0:
      return num_steps // n
  return num_steps


def run_svi_chunked(run_chunk, state, num_steps: int, describe=None, tick=None):
  """Runs `run_chunk(state) -> (state, losses (..., c))` until `num_steps`, in equal chunks.

  Args:
    run_chunk: a jitted function taking and returning an SVI state (any leading fold axis),
      doing `_chunk_length(num_steps)` steps.
    state: the initial state.
    num_steps: total steps.
    describe: optional `f(done, losses) -> str` for progress lines.
    tick: a `progress.Throttle` (or any callable taking a message) for progress lines.

  Returns:
    (state, losses (..., steps run)): stops early once every loss of the last chunk is
    non-finite (a NaN never recovers), so a diverged run costs less than a full one.
  """
  chunk = _chunk_length(num_steps)
  losses = []
  done = 0
  while done < num_steps:
    state, part = run_chunk(state)
    part = np.asarray(part)
    losses.append(part)
    done += chunk
    if tick is not None and describe is not None:
      tick(describe(done, part))
    if not np.isfinite(part[..., -1]).any():
      break
  return state, np.concatenate(losses, axis=-1)


# A fit's loss trace is "exploding" when its last tenth averages this many nats above the best
# tenth: SVI's single-sample ELBO is noisy, but a run that climbs back up by this much from
# its best has left the basin it found (seen before NaNs on large data sets).
EXPLODE_NATS_PER_TRIAL = 0.5


def svi_divergence(losses, num_trials: int) -> str | None:
  """Why an SVI loss trace (steps,) counts as diverged, or None when it does not.

  Diverged: any non-finite loss, or the mean loss of the final tenth exceeding the lowest
  tenth's mean by more than `EXPLODE_NATS_PER_TRIAL` x max(num_trials, 10) nats.
  """
  losses = np.asarray(losses, np.float64)
  if not np.all(np.isfinite(losses)):
    first = int(np.argmin(np.isfinite(losses)))
    return f'non-finite ELBO loss from step {first + 1} of {len(losses)}'
  tenth = max(len(losses) // 10, 1)
  means = np.array([losses[i:i + tenth].mean() for i in range(0, len(losses) - tenth + 1,
                                                                 tenth)])
  rise = float(means[-1] - means.min())
  if rise > EXPLODE_NATS_PER_TRIAL * max(num_trials, 10):
    return f'exploding ELBO loss: the last tenth is {rise:.3g} nats above the best tenth'
  return None


def _params_finite(params) -> bool:
  return all(bool(np.all(np.isfinite(np.asarray(v)))) for v in jax.tree_util.tree_leaves(params))


def _svi_with_restarts(key, svi, run, d, trial_weight, num_steps, learning_rate, num_trials,
                       max_restarts, lr_factor, tick=None, label='BNS SVI'):
  """SVI from a fresh init, restarted at a lower step size while it diverges.

  Args:
    svi: the SVI object; run: jitted `(state, trial_weight) -> (state, losses)` doing
      `_chunk_length(num_steps)` steps (compiled once for every try).
    learning_rate: the first try's step size; each restart multiplies it by `lr_factor`.
    label: names the fit in progress and warning lines.

  Returns:
    (state, losses, attempts): `attempts` lists every try as dict(learning_rate, diverged:
    reason or None); the last is the one returned.

  Raises:
    FloatingPointError when the last try still diverges.
  """
  from rnn_behaviour.behaviour import progress  # pylint: disable=g-import-not-at-top
  attempts = []
  lr = float(learning_rate)
  for attempt in range(max_restarts + 1):
    # The first try uses `key` itself, so a fit that never diverges is the plain SVI fit.
    key_init = key if attempt == 0 else jax.random.fold_in(key, attempt)
    state = _with_learning_rate(svi.init(key_init, d, trial_weight), lr)
    describe = lambda done, part, lr=lr: (f'{label}: step {done}/{num_steps}, loss '
                                          f'{float(np.nanmean(part)):.1f} (lr {lr:.3g})')
    state, losses = run_svi_chunked(lambda st: run(st, trial_weight), state, num_steps,
                                    describe, tick)
    reason = svi_divergence(losses, num_trials)
    if reason is None and not _params_finite(svi.get_params(state)):
      reason = 'non-finite guide parameters'
    attempts.append(dict(learning_rate=lr, diverged=reason))
    if reason is None:
      return state, losses, attempts
    if attempt < max_restarts:
      progress.warning(f'{label} diverged ({reason}) at learning rate {lr:.3g}; restarting '
                       f'from a new initialisation at {lr * lr_factor:.3g}')
    lr *= lr_factor
  raise FloatingPointError(
      f'{label} diverged on every one of {max_restarts + 1} tries ({attempts[-1]["diverged"]}); '
      'lower config.fit.svi_learning_rate or raise config.fit.svi_max_restarts')


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
    max_restarts, restart_lr_factor: SVI that diverges (`svi_divergence`) is restarted from a
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
    svi, g = _svi_parts(spec, labels, guide, learning_rate)
    chunk = _chunk_length(num_steps)
    run = jax.jit(lambda st, w: _run_svi(svi, st, d, w, chunk))
    state, losses, attempts = _svi_with_restarts(
        key_fit, svi, run, d, None, num_steps, learning_rate, len(table), max_restarts,
        restart_lr_factor, tick, label='BNS fit')
    guide_params = jax.device_get(svi.get_params(state))
    latent = g.sample_posterior(key_post, guide_params, sample_shape=(num_samples,))
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
  samples = dict(jax.vmap(lambda lat: build_params(lat, spec))(latent),
                 coef_raw=latent['coef_raw'])
  samples = {k: np.asarray(v) for k, v in jax.device_get(samples).items()}
  info['fit_seconds'] = time.time() - start
  return BNSFit(spec=spec, labels=labels, samples=samples, info=info,
                guide_params=guide_params)


@dataclasses.dataclass
class CrossValidation:
  """k-fold held-out log predictive density of one model.

  lpd: (T,) lpd_t of every trial, NaN for the trials of skipped folds.
  folds: list of dict(fold, num_heldout, status: 'ok' | 'recovered' | 'skipped', attempts:
    every SVI try as dict(learning_rate, diverged: reason or None)).
  """
  lpd: np.ndarray
  folds: list

  @property
  def skipped(self) -> list:
    return [f['fold'] for f in self.folds if f['status'] == 'skipped']

  @property
  def recovered(self) -> list:
    return [f['fold'] for f in self.folds if f['status'] == 'recovered']


def cross_validate(key, table: data_lib.TrialTable, spec: BNSSpec, folds: np.ndarray, *,
                   num_steps: int = 2000, learning_rate: float = 0.02, num_samples: int = 200,
                   guide: str = 'mvn', **kwargs) -> np.ndarray:
  """Held-out lpd of every trial by k-fold CV with SVI, (T,); see `cross_validate_folds`."""
  return cross_validate_folds(key, table, spec, folds, num_steps=num_steps,
                              learning_rate=learning_rate, num_samples=num_samples,
                              guide=guide, **kwargs).lpd


def cross_validate_folds(key, table: data_lib.TrialTable, spec: BNSSpec, folds: np.ndarray, *,
                         num_steps: int = 2000, learning_rate: float = 0.02,
                         num_samples: int = 200, guide: str = 'mvn', max_restarts: int = 2,
                         restart_lr_factor: float = 0.3, tick=None,
                         label: str = 'BNS CV', done: dict | None = None,
                         on_fold=None) -> CrossValidation:
  """Held-out log predictive density of every trial by k-fold CV with SVI.

  lpd_t = log mean_s p(y_t | theta_s), theta_s drawn from the guide fitted to the other folds.
  All folds are first fitted in one vmapped optimisation (one compilation). A fold whose SVI
  diverged (`svi_divergence`, or non-finite guide parameters) is refitted alone from a new
  initialisation at `restart_lr_factor` times the step size, up to `max_restarts` times
  (status 'recovered'); if it still diverges its trials get NaN and the fold is 'skipped',
  with a warning, instead of failing the whole comparison.

  Args:
    key: PRNG key.
    table: trials; folds (T,) int fold of every trial.
    num_steps, learning_rate, guide: SVI settings; num_samples: guide draws per fold.
    tick: optional progress callable; label: names the model in progress/warning lines.
    done: optional {fold id: result} of folds finished by an earlier, interrupted run (what
      `on_fold` was given): they are read back, not refitted (their report says
      `reused: True`); only the other folds are fitted, still together.
    on_fold: optional callable(fold id, result) called as each fold is scored, result =
      dict(lpd: the fold's held-out lpd_t in table order, None where not finite; report: the
      fold's entry of `CrossValidation.folds`). A caller that saves it can resume (`done`).

  A fold's result depends only on its own key (split from `key` by fold position), so the
  folds fitted on a rerun are the same fits as in an uninterrupted run (up to float round-off
  of a vmap over fewer folds).
  """
  from rnn_behaviour.behaviour import progress  # pylint: disable=g-import-not-at-top
  d, labels = make_data(spec, table)
  folds = np.asarray(folds)
  fold_ids = np.unique(folds)
  weights = jnp.asarray(folds[None, :] != fold_ids[:, None], jnp.float32)   # (K, T)
  svi, g = _svi_parts(spec, labels, guide, learning_rate)
  key_init, key_fit, key_post, key_retry = jax.random.split(key, 4)
  done = {int(k): v for k, v in (done or {}).items()}
  todo = [i for i, k in enumerate(fold_ids) if int(k) not in done]
  chunk = _chunk_length(num_steps)
  position = {i: p for p, i in enumerate(todo)}
  if todo:
    state = svi.init(key_init, d, weights[0])
    states = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (len(todo),) + a.shape),
                                    state)
    states = states._replace(
        rng_key=jax.random.split(key_fit, len(fold_ids))[np.asarray(todo)])
    run = jax.jit(jax.vmap(lambda s, w: _run_svi(svi, s, d, w, chunk)))
    describe = lambda step, part: (f'{label}: {len(todo)} folds together, step '
                                   f'{step}/{num_steps}, mean loss '
                                   f'{float(np.nanmean(part)):.1f}')
    todo_weights = weights[np.asarray(todo)]
    states, losses = run_svi_chunked(lambda st: run(st, todo_weights), states, num_steps,
                                     describe, tick)
  if done:
    progress.info(f'{label}: reusing {len(done)} of {len(fold_ids)} folds finished by an '
                  'earlier run')
  num_train = np.asarray(weights.sum(1))
  run_one = jax.jit(lambda st, w: _run_svi(svi, st, d, w, chunk))    # Refits, one fold.

  nf, ng = labels.num_functions(spec), labels.num_groups(spec)
  bound = lambda d, trial_weight=None, observe=True: model(d, spec, nf, ng, trial_weight,
                                                           observe)

  @jax.jit
  def heldout(state, k):
    params = svi.get_params(state)
    latent = g.sample_posterior(k, params, sample_shape=(num_samples,))
    latent = {n: v for n, v in latent.items() if n in LATENT_SITES}
    ll = heldout_log_likelihood(bound, latent, d)
    return jax.scipy.special.logsumexp(ll, axis=0) - jnp.log(num_samples)

  out = np.full(len(table), np.nan)
  report = []
  for i, k in enumerate(fold_ids):
    sel = folds == k
    if int(k) in done:
      out[sel] = [np.nan if x is None else x for x in done[int(k)]['lpd']]
      report.append(dict(done[int(k)]['report'], reused=True))
      continue
    state_i = jax.tree_util.tree_map(lambda a, p=position[i]: a[p], states)
    reason = svi_divergence(losses[position[i]], int(num_train[i]))
    if reason is None and not _params_finite(svi.get_params(state_i)):
      reason = 'non-finite guide parameters'
    attempts = [dict(learning_rate=float(learning_rate), diverged=reason)]
    status = 'ok'
    if reason is not None and max_restarts == 0:
      status = 'skipped'
    elif reason is not None:
      progress.warning(f'{label}: fold {i + 1}/{len(fold_ids)} diverged ({reason}); '
                       'refitting it alone at a lower step size')
      try:
        state_i, _, more = _svi_with_restarts(
            jax.random.fold_in(key_retry, i), svi, run_one, d, weights[i], num_steps,
            learning_rate * restart_lr_factor, int(num_train[i]), max_restarts - 1,
            restart_lr_factor, tick, label=f'{label} fold {i + 1}/{len(fold_ids)}')
        attempts += more
        status = 'recovered'
      except FloatingPointError as e:
        attempts.append(dict(learning_rate=None, diverged=str(e)))
        status = 'skipped'
    if status != 'skipped':
      lpd = np.asarray(heldout(state_i, jax.random.fold_in(key_post, i)))
      if not np.all(np.isfinite(lpd[sel])):
        status = 'skipped'
        attempts.append(dict(learning_rate=None, diverged='non-finite held-out density'))
      else:
        out[sel] = lpd[sel]
    if status == 'skipped':
      progress.warning(f'{label}: fold {i + 1}/{len(fold_ids)} skipped (SVI diverged on every '
                       f'try); its {int(sel.sum())} held-out trials are left out of this '
                       "model's score")
    elif status == 'recovered':
      progress.warning(f'{label}: fold {i + 1}/{len(fold_ids)} recovered at learning rate '
                       f'{attempts[-1]["learning_rate"]:.3g}')
    report.append(dict(fold=int(k), num_heldout=int(sel.sum()), status=status,
                       attempts=attempts))
    if on_fold is not None:
      on_fold(int(k), dict(lpd=[float(x) if np.isfinite(x) else None for x in out[sel]],
                           report=report[-1]))
  return CrossValidation(lpd=out, folds=report)


def make_folds(key, num_trials: int, num_folds: int) -> np.ndarray:
  """(T,) fold of every trial: a random permutation dealt round-robin (sizes differ by <= 1)."""
  if num_folds < 2:
    raise ValueError(f'cross-validation needs >= 2 folds, got {num_folds}')
  perm = np.asarray(jax.random.permutation(key, num_trials))
  folds = np.empty(num_trials, np.int64)
  folds[perm] = np.arange(num_trials) % num_folds
  return folds


# --------------------------------------------------------------------------------------------
# Save / load, swap-function grid
# --------------------------------------------------------------------------------------------


def save(fit_: BNSFit, directory: str, config: dict | None = None) -> str:
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


def load(directory: str) -> BNSFit:
  """Reads a fit written by `save`."""
  folder = epath.Path(directory)
  path = folder / 'fit.json'
  if not path.exists():
    raise FileNotFoundError(f'{path}: no saved BNS fit here (run --mode=fit_behaviour first)')
  meta = json.loads(path.read_text())
  samples = _read_npz(folder / 'samples.npz')
  guide_path = folder / 'guide_params.npz'
  guide_params = _read_npz(guide_path) if guide_path.exists() else None
  labels = Labels(set_sizes=tuple(int(s) for s in meta['set_sizes']),
                  subjects=tuple(str(s) for s in meta['subjects']))
  info = dict(meta.get('info', {}), config=meta.get('config', {}))
  return BNSFit(spec=BNSSpec.from_json(meta['spec']), labels=labels, samples=samples,
                info=info, guide_params=guide_params)


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
