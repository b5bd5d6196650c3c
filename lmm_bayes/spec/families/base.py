"""The :class:`Family` base class: what every response family answers, so no caller branches on a name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lmm_bayes.spec.families.links import LINKS, Link

__all__ = ["Family"]


@dataclass(frozen=True, repr=False)
class Family:
    """A response distribution and its link; one subclass per family (:mod:`lmm_bayes.spec.families`).

    Parameters
    ----------
    link : str, optional
        One of the family's :attr:`links` (default: the first, canonical one).

    Attributes
    ----------
    name : str
        The family's name as users write it (``family="poisson"``).
    links : tuple of str
        Its links, the canonical (default) one first.
    aliases : tuple of str
        Other names :func:`~lmm_bayes.spec.families.registry.get_family` accepts.
    aux : str or None
        Its extra parameter in the posterior and in :class:`~lmm_bayes.spec.priors.Priors`
        (``"sigma"``, ``"dispersion"``), or None.
    is_gaussian : bool
        The linear mixed model's family (exact collapsed methods, data-scaled priors).
    counts, successes : bool
        The response is a count (0, 1, 2, ...), or successes of trials (Bernoulli, binomial).
    needs_trials : bool
        Each row has a number of trials (binomial).
    latent_needs_mean : bool
        :meth:`latent_variance` depends on the expected count.
    kernel_code : int or None
        The family's code in the Laplace kernel's loops
        (:mod:`lmm_bayes.inference.methods.laplace.kernel`), None without one.

    Examples
    --------
    >>> from lmm_bayes.spec.families.registry import get_family
    >>> f = get_family("bernoulli", "probit")
    >>> f, f.aux, float(f.inverse_link(np.array([0.0]))[0])
    (Family(name='bernoulli', link='probit'), None, 0.5)
    """

    link: str = ""

    name: ClassVar[str] = ""
    links: ClassVar[tuple[str, ...]] = ()
    aliases: ClassVar[tuple[str, ...]] = ()
    aux: ClassVar[str | None] = None
    is_gaussian: ClassVar[bool] = False
    counts: ClassVar[bool] = False
    successes: ClassVar[bool] = False
    needs_trials: ClassVar[bool] = False
    latent_needs_mean: ClassVar[bool] = False
    kernel_code: ClassVar[int | None] = None

    def __post_init__(self) -> None:
        if not self.link:  # the canonical link
            object.__setattr__(self, "link", self.links[0])

    def __repr__(self) -> str:
        return f"Family(name={self.name!r}, link={self.link!r})"

    # ------------------------------------------------------------ the link
    @property
    def link_object(self) -> Link:
        """The :class:`~lmm_bayes.spec.families.links.Link` behind :attr:`link`."""
        return LINKS[self.link]

    @property
    def canonical(self) -> bool:
        """Whether :attr:`link` is the family's canonical (first) link."""
        return self.link == self.links[0]

    @property
    def ratio_name(self) -> str:
        """What ``exp(beta)`` is: ``"rate ratio"`` (log link), ``"odds ratio"`` (logit), or ""."""
        return self.link_object.ratio_name

    @property
    def link_scale(self) -> str:
        """What the coefficients are, for labels: ``"link scale: log rate"``, ..., ``"response scale"``."""
        return self.link_object.scale_label

    def inverse_link(self, eta: np.ndarray) -> np.ndarray:
        """The mean per trial (a probability) or per row (a rate) from the linear predictor."""
        return self.link_object.inverse(np.asarray(eta, dtype=float))

    def link_function(self, mu: np.ndarray) -> np.ndarray:
        """``g(mu)``, the inverse of :meth:`inverse_link`."""
        return self.link_object(np.asarray(mu, dtype=float))

    # ------------------------------------------------------------ the response
    def check_response(self, y: np.ndarray, name: str, trials: np.ndarray | None = None, index=None) -> None:
        """``ValueError`` naming the column, how many rows are bad, the first of them, and what to do.

        ``index`` holds the rows' labels in the data (default: their positions).
        """
        raise NotImplementedError

    def separation_note(self, y: np.ndarray, name: str, trials: np.ndarray | None = None,
                        X: np.ndarray | None = None, columns: tuple[str, ...] = ()) -> str | None:
        """What separates the response, if anything: a sentence for a warning, or None.

        Only binary and binomial responses can be separated (:class:`~lmm_bayes.spec.families.binomial.Binomial`).
        """
        return None

    # ------------------------------------------------------------ the distribution
    def log_likelihood(self, y: np.ndarray, eta: np.ndarray, aux: np.ndarray | None = None,
                       trials: np.ndarray | None = None) -> np.ndarray:
        """Pointwise log-likelihood of ``y`` at linear predictors ``eta`` (broadcast; ``aux`` per draw with a trailing axis)."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, eta: np.ndarray, aux: np.ndarray | None = None,
             trials: np.ndarray | None = None) -> np.ndarray:
        """Responses drawn at linear predictors ``eta`` (the posterior predictive)."""
        raise NotImplementedError

    def variance(self, mu: Any, aux: Any = None, trials: Any = None) -> Any:
        """``Var(y | mu)`` for expected responses ``mu`` (arrays or xarray, broadcast; Pearson residuals)."""
        raise NotImplementedError

    def latent_variance(self, mean_count: np.ndarray | None = None, aux: np.ndarray | None = None) -> np.ndarray:
        """The distribution-specific variance on the link scale (Nakagawa et al. 2017).

        Parameters
        ----------
        mean_count : ndarray, optional
            The expected count lambda per draw (where :attr:`latent_needs_mean`).
        aux : ndarray, optional
            The family's extra parameter per draw (``sigma`` or ``dispersion``).
        """
        raise NotImplementedError

    # ------------------------------------------------------------ information about eta (IRLS, shrinkage)
    def working_weights(self, eta: np.ndarray, y: np.ndarray, trials: np.ndarray | None = None,
                        aux: np.ndarray | float | None = None) -> np.ndarray:
        """``W = -d² log p(y | eta) / d eta²`` per row (expected, or observed where stated), broadcast over draws."""
        raise NotImplementedError

    def score_and_weights(self, eta: np.ndarray, y: np.ndarray, trials: np.ndarray | None = None,
                          aux: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``d log p / d eta`` per row and the expected information (Fisher scoring's weights)."""
        raise NotImplementedError

    def empty_cluster_notes(self, y: np.ndarray, codes: np.ndarray, levels: int,
                            trials: np.ndarray | None = None) -> np.ndarray:
        """A note per cluster whose own intercept has no finite maximum likelihood estimate ("" where it has)."""
        return np.full(levels, "", dtype=object)

    # ------------------------------------------------------------ priors, PyMC, the Laplace kernel
    def default_intercept(self, y: np.ndarray, trials: np.ndarray | None, offset: np.ndarray | None) -> float:
        """Where the intercept's link-scale prior is centred: the link of the pooled mean (:mod:`~lmm_bayes.spec.priors`)."""
        raise NotImplementedError(f"family={self.name!r} has data-scaled priors")

    def default_aux_prior(self):
        """The link-scale default prior of :attr:`aux` (a :class:`~lmm_bayes.Prior`), or None (none, or data-scaled)."""

    def add_likelihood(self, eta, y, *, trials=None, priors=None) -> None:
        """The observed ``y`` at linear predictor ``eta`` (offset included) in the PyMC model in context.

        ``trials`` is the graph's trials data (or None); ``priors`` gives :attr:`aux`'s prior.
        """
        raise NotImplementedError

    def kernel_constant(self, y: np.ndarray, trials: np.ndarray) -> float:
        """The log-likelihood's terms that depend on the data alone, summed (the Laplace method's)."""
        raise NotImplementedError
