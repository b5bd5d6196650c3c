"""The response families by name: :func:`get_family`, and the registered classes, one line each."""

from __future__ import annotations

from lmm_bayes.spec.families.base import Family
from lmm_bayes.spec.families.binomial import Bernoulli, Binomial
from lmm_bayes.spec.families.checks import check_trials
from lmm_bayes.spec.families.gaussian import Gaussian
from lmm_bayes.spec.families.negative_binomial import NegativeBinomial
from lmm_bayes.spec.families.poisson import Poisson

__all__ = [
    "FAMILIES", "GAUSSIAN", "REGISTERED", "Bernoulli", "Binomial", "Family", "Gaussian", "NegativeBinomial",
    "Poisson", "check_trials", "get_family", "require_gaussian",
]

#: the family classes, in the order error messages list them: a new family is one more line
REGISTERED: tuple[type[Family], ...] = (
    Gaussian,
    Poisson,
    NegativeBinomial,
    Bernoulli,
    Binomial,
)

#: family name → its links, the canonical (default) one first
FAMILIES: dict[str, tuple[str, ...]] = {f.name: f.links for f in REGISTERED}
_BY_NAME: dict[str, type[Family]] = {f.name: f for f in REGISTERED}
_ALIASES: dict[str, str] = {a: f.name for f in REGISTERED for a in f.aliases}

#: the linear mixed model's family, every design's default
GAUSSIAN: Family = Gaussian()


def get_family(family: str | Family, link: str | None = None) -> Family:
    """The :class:`Family` for a name (and link; ``None`` takes the canonical one).

    Examples
    --------
    >>> get_family("nb") == get_family("negativebinomial"), get_family("bernoulli", "probit")
    (True, Family(name='bernoulli', link='probit'))
    """
    if isinstance(family, Family):
        if link is not None and link != family.link:
            raise ValueError(f"link={link!r} contradicts the family's own link {family.link!r}; give one of them")
        return family
    if not isinstance(family, str):
        raise TypeError(f"family must be a name such as 'poisson', got {type(family).__name__}")
    key = family.lower().replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {list(FAMILIES)}")
    links = FAMILIES[key]
    if link is None:
        return _BY_NAME[key](links[0])
    if not isinstance(link, str):
        raise TypeError(f"link must be a name such as {links[0]!r}, got {type(link).__name__}")
    if link not in links:
        raise ValueError(f"link={link!r} is not available for family={key!r}; choose one of {list(links)}")
    return _BY_NAME[key](link)


def require_gaussian(design: object, what: str) -> None:
    """``ValueError`` unless the design is Gaussian: ``what`` is built for Gaussian models only (so far)."""
    family = design.family
    if not family.is_gaussian:
        raise ValueError(
            f"{what} is built for Gaussian models only so far; this model is family={family.name!r} "
            "(not built yet for generalized models: issue 20)"
        )
