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

Fitting: SVI (default; a multivariate-normal guide, ELBO, Adam) or NUTS. A fit is saved as a
folder: `fit.json` (spec, labels, settings), `samples.npz` (posterior draws of every parameter)
and, for SVI, `guide_params.npz`. `cross_validate` returns held-out log predictive densities by
k-fold CV, fitting all folds at once (vmapped SVI).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import autoguide

from rnn_behaviour import circular
from rnn_behaviour.behaviour import data as data_lib

DIMENSIONS = ('cue', 'report', 'torus')
EMISSIONS = ('von_mises', 'wrapped_stable')
INFERENCES = ('svi', 'nuts')
_KERNEL_GRID = 256
_LOG_2PI = float(np.log(2.0 * np.pi))


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

  cos_target: (T,) cos(y - r_k). cos_nontarget: (T, J) cos(y - r_j).
  features: (T, J, B) swap-function basis at each non-target's distances.
  nontarget_mask: (T, J). function_index: (T,) which swap function. group_index: (T,) which
  guess logit / emission parameters. stable_cos: (T, 1 + J, P) cos(p (y - r_j)), p = 1..P,
  target first (only for the wrapped-stable emission, else a (T, 1 + J, 0) placeholder).
  """
  cos_target: jnp.ndarray
  cos_nontarget: jnp.ndarray
  features: jnp.ndarray
  nontarget_mask: jnp.ndarray
  function_index: jnp.ndarray
  group_index: jnp.ndarray
  stable_cos: jnp.ndarray


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
  err_t = table.error()
  err_n = np.where(mask, circular.wrap(table.response[:, None] - nt_report), 0.0)
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
  if spec.emission == 'wrapped_stable':
    p = np.arange(1, spec.stable_terms + 1)
    errs = np.concatenate([err_t[:, None], err_n], axis=1)
    stable_cos = np.cos(errs[..., None] * p).astype(np.float32)
  else:
    stable_cos = np.zeros((len(table), mask.shape[1] + 1, 0), np.float32)
  features = basis_features(spec, jnp.asarray(dc, jnp.float32), jnp.asarray(dr, jnp.float32))
  return BNSData(cos_target=jnp.asarray(np.cos(err_t), jnp.float32),
                 cos_nontarget=jnp.asarray(np.cos(err_n), jnp.float32),
                 features=features * jnp.asarray(mask[..., None], jnp.float32),
                 nontarget_mask=jnp.asarray(mask), function_index=jnp.asarray(fn),
                 group_index=jnp.asarray(group), stable_cos=jnp.asarray(stable_cos)), labels


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


def trial_log_weights(params, d: BNSData):
  """log mixture weights of every trial, (T, 2 + J): guess, target, non-targets (-inf pads)."""
  mu = params['swap_mean'][d.function_index]
  coef = params['coef'][d.function_index]                    # (T, B)
  f = mu[:, None] + jnp.einsum('tjb,tb->tj', d.features, coef)
  u = params['guess_logit'][d.group_index]
  logits = jnp.concatenate(
      [u[:, None], jnp.zeros_like(u)[:, None], jnp.where(d.nontarget_mask, f, -jnp.inf)], -1)
  return jax.nn.log_softmax(logits, axis=-1)


def trial_log_likelihood(params, d: BNSData, spec: BNSSpec):
  """log p(y) of every trial under one parameter set (see `build_params`), (T,)."""
  log_w = trial_log_weights(params, d)
  if spec.emission == 'von_mises':
    kappa = params['kappa'][d.group_index][:, None]
    cos = jnp.concatenate([d.cos_target[:, None], d.cos_nontarget], axis=-1)
    log_em = kappa * (cos - 1.0) - jnp.log(2 * jnp.pi * jax.scipy.special.i0e(kappa))
  else:
    gamma = params['gamma'][d.group_index][:, None]
    alpha = params['alpha'][d.group_index][:, None]
    log_em = _stable_log_density(d.stable_cos, jnp.broadcast_to(gamma, d.stable_cos.shape[:2]),
                                 jnp.broadcast_to(alpha, d.stable_cos.shape[:2]))
  terms = jnp.concatenate([(log_w[:, 0] - _LOG_2PI)[:, None], log_w[:, 1:] + log_em], axis=-1)
  return jax.scipy.special.logsumexp(terms, axis=-1)


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


def model(d: BNSData, spec: BNSSpec, num_functions: int, num_groups: int, trial_weight=None):
  """The NumPyro model. trial_weight (T,) 0/1 selects the trials that count (k-fold CV)."""
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
  ll = trial_log_likelihood(build_params(latent, spec), d, spec)
  if trial_weight is not None:
    ll = ll * trial_weight
  numpyro.factor('loglik', ll.sum())


LATENT_SITES = ('lengthscale', 'amplitude', 'swap_mean', 'coef_raw', 'guess_logit', 'kappa',
                'gamma', 'alpha')


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BNSFit:
  """A fitted BNS: spec, labels and S posterior draws of every parameter (numpy arrays).

  samples: swap_mean (S, F), coef (S, F, B), guess_logit (S, G), kappa (S, G) or gamma,
  alpha (S, G), lengthscale (S, num_dims), amplitude (S,).
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

  def trial_log_likelihood(self, table: data_lib.TrialTable):
    """(S, T) log p(y_t | draw s)."""
    d, _ = make_data(self.spec, table, self.labels)
    params = {k: jnp.asarray(v) for k, v in self.samples.items()}
    return jax.lax.map(lambda p: trial_log_likelihood(p, d, self.spec), params, batch_size=16)


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
  optim = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(learning_rate))
  svi = numpyro.infer.SVI(bound, g, optim, numpyro.infer.Trace_ELBO())
  return svi, g


def _run_svi(svi, state, d, trial_weight, num_steps):
  def body(state, _):
    state, loss = svi.update(state, d, trial_weight)
    return state, loss
  return jax.lax.scan(body, state, None, length=num_steps)


def fit(key, table: data_lib.TrialTable, spec: BNSSpec = BNSSpec(), *, inference: str = 'svi',
        num_steps: int = 2000, learning_rate: float = 0.02, num_samples: int = 500,
        guide: str = 'mvn', num_warmup: int = 500, labels: Labels | None = None) -> BNSFit:
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

  Returns:
    BNSFit with `num_samples` draws; `info` holds timing and the final ELBO loss.
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
    state = svi.init(key_fit, d, None)
    state, losses = jax.jit(_run_svi, static_argnums=(0, 4))(svi, state, d, None, num_steps)
    if not np.all(np.isfinite(np.asarray(losses[-10:]))):
      raise FloatingPointError(f'BNS SVI diverged (loss {float(losses[-1])}); lower '
                               f'config.fit.svi_learning_rate (now {learning_rate})')
    guide_params = jax.device_get(svi.get_params(state))
    latent = g.sample_posterior(key_post, guide_params, sample_shape=(num_samples,))
    losses = np.asarray(losses)
    info.update(num_steps=num_steps, learning_rate=learning_rate, guide=guide,
                final_loss=float(losses[-100:].mean()), initial_loss=float(losses[0]))
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
  samples = jax.vmap(lambda lat: build_params(lat, spec))(latent)
  samples = {k: np.asarray(v) for k, v in jax.device_get(samples).items()}
  info['fit_seconds'] = time.time() - start
  return BNSFit(spec=spec, labels=labels, samples=samples, info=info,
                guide_params=guide_params)


def cross_validate(key, table: data_lib.TrialTable, spec: BNSSpec, folds: np.ndarray, *,
                   num_steps: int = 2000, learning_rate: float = 0.02, num_samples: int = 200,
                   guide: str = 'mvn') -> np.ndarray:
  """Held-out log predictive density of every trial by k-fold CV with SVI, (T,).

  lpd_t = log mean_s p(y_t | theta_s), theta_s drawn from the guide fitted to the other folds.
  All folds are fitted in one vmapped optimisation (one compilation, no Python loop).
  """
  d, labels = make_data(spec, table)
  folds = np.asarray(folds)
  fold_ids = np.unique(folds)
  weights = jnp.asarray(folds[None, :] != fold_ids[:, None], jnp.float32)   # (K, T)
  svi, g = _svi_parts(spec, labels, guide, learning_rate)
  key_init, key_fit, key_post = jax.random.split(key, 3)
  state = svi.init(key_init, d, weights[0])
  states = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (len(fold_ids),) + a.shape),
                                  state)
  states = states._replace(rng_key=jax.random.split(key_fit, len(fold_ids)))
  run = jax.jit(jax.vmap(lambda s, w: _run_svi(svi, s, d, w, num_steps)[0]))
  states = run(states, weights)

  def heldout(state, k):
    params = svi.get_params(state)
    latent = g.sample_posterior(k, params, sample_shape=(num_samples,))
    latent = {n: v for n, v in latent.items() if n in LATENT_SITES}
    draws = jax.vmap(lambda lat: build_params(lat, spec))(latent)
    ll = jax.lax.map(lambda p: trial_log_likelihood(p, d, spec), draws, batch_size=16)
    return jax.scipy.special.logsumexp(ll, axis=0) - jnp.log(num_samples)

  out = np.zeros(len(table))
  for i, k in enumerate(fold_ids):
    state_i = jax.tree_util.tree_map(lambda a: a[i], states)
    lpd = np.asarray(heldout(state_i, jax.random.fold_in(key_post, i)))
    out[folds == k] = lpd[folds == k]
  return out


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
  """Writes fit.json, samples.npz and (SVI) guide_params.npz into `directory`."""
  os.makedirs(directory, exist_ok=True)
  meta = dict(spec=fit_.spec.to_json(), set_sizes=list(fit_.labels.set_sizes),
              subjects=list(fit_.labels.subjects), info=fit_.info, config=config or {})
  with open(os.path.join(directory, 'fit.json'), 'w') as f:
    json.dump(meta, f, indent=2, default=str)
  np.savez(os.path.join(directory, 'samples.npz'), **fit_.samples)
  if fit_.guide_params is not None:
    np.savez(os.path.join(directory, 'guide_params.npz'),
             **{k: np.asarray(v) for k, v in fit_.guide_params.items()})
  return directory


def load(directory: str) -> BNSFit:
  """Reads a fit written by `save`."""
  path = os.path.join(directory, 'fit.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no saved BNS fit here (run --mode=fit_behaviour first)')
  with open(path) as f:
    meta = json.load(f)
  with np.load(os.path.join(directory, 'samples.npz')) as z:
    samples = {k: z[k] for k in z.files}
  guide_path = os.path.join(directory, 'guide_params.npz')
  guide_params = None
  if os.path.exists(guide_path):
    with np.load(guide_path) as z:
      guide_params = {k: z[k] for k in z.files}
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
