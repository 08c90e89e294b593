"""The two- and three-component mixture models in NumPyro, with priors: the Bayesian
counterpart of mixture.py's maximum-likelihood EM fits, all cells at once."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from rnn_behaviour.behaviour import mixture


def numpyro_model(d: mixture.CellData, three: bool = True, kappa_prior=(np.log(5.0), 1.5)):
  """The mixture model with priors, all cells at once (a `cells` plate); the responses are
  the observed site 'response' (`response_distribution`, padding slots masked out).

  Priors: log kappa ~ N(log 5, 1.5^2); (pT, pU) ~ Dirichlet(1, 1) or (pT, pN, pU) ~
  Dirichlet(1, 1, 1) (for cells without non-targets pN is fixed at 0 and (pT, pU) ~ Dir(1, 1)).
  """
  has_nt = d.nontarget_mask.any((-1, -2))
  with numpyro.plate('cells', d.num_cells):
    kappa = numpyro.sample('kappa', dist.LogNormal(*kappa_prior))
    if three:
      w = numpyro.sample('weights', dist.Dirichlet(jnp.ones(3)))
      p_t = jnp.where(has_nt, w[:, 0], w[:, 0] / (w[:, 0] + w[:, 2]))
      p_n = jnp.where(has_nt, w[:, 1], 0.0)
      p_u = 1.0 - p_t - p_n
    else:
      p_t = numpyro.sample('p_t', dist.Beta(1.0, 1.0))
      p_n, p_u = jnp.zeros_like(p_t), 1.0 - p_t
    for name, value in (('p_t', p_t), ('p_n', p_n), ('p_u', p_u)):
      if not (name == 'p_t' and not three):
        numpyro.deterministic(name, value)
  params = dict(kappa=kappa, p_t=jnp.clip(p_t, 1e-12), p_n=jnp.clip(p_n, 1e-12),
                p_u=jnp.clip(p_u, 1e-12))
  with numpyro.handlers.mask(mask=d.trial_mask):
    numpyro.sample('response', response_distribution(params, d), obs=d.response)


def response_distribution(params, d: mixture.CellData):
  """Every trial slot's response distribution, batch shape (C, L): a `MixtureGeneral` of the
  target's von Mises, the uniform guess and each non-target's von Mises (weight pN / (N - 1)).

  params: dict of (C,) arrays kappa, p_t, p_n, p_u. Padding slots are scored too; mask them.
  """
  num_nt = jnp.maximum(d.nontarget_mask.sum(-1), 1)                          # (C, L)
  log_pn = jnp.log(params['p_n'])[:, None] - jnp.log(num_nt)
  logits = jnp.concatenate([
      jnp.broadcast_to(jnp.log(params['p_t'])[:, None, None], num_nt.shape + (1,)),
      jnp.broadcast_to(jnp.log(params['p_u'])[:, None, None], num_nt.shape + (1,)),
      jnp.where(d.nontarget_mask, log_pn[..., None], -jnp.inf)], axis=-1)
  kappa = jnp.broadcast_to(params['kappa'][:, None], num_nt.shape)
  guess = dist.Uniform(-jnp.pi, jnp.pi).expand(num_nt.shape)
  items = [dist.VonMises(d.centres[..., j], kappa) for j in range(d.centres.shape[-1])]
  # Absent non-targets have weight exactly 0 (logit -inf), which validation would reject.
  return dist.MixtureGeneral(dist.Categorical(logits=logits, validate_args=False),
                             items[:1] + [guess] + items[1:],
                             support=dist.constraints.circular)


def fit_bayesian(key, d: mixture.CellData, three: bool = True, num_warmup: int = 500,
                 num_samples: int = 500):
  """NUTS posterior of `numpyro_model`; returns samples dict of (S, C) arrays."""
  mcmc = numpyro.infer.MCMC(numpyro.infer.NUTS(numpyro_model), num_warmup=num_warmup,
                            num_samples=num_samples, progress_bar=False)
  mcmc.run(key, d, three=three)
  return mcmc.get_samples()
