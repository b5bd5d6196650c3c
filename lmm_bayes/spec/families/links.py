"""Link functions ``g``: ``g(mu) = eta``, its inverse in numpy and in PyTensor, and what ``exp(beta)`` means.

A family holds its link's name (``family.link``, a string, as messages and saved fits
write it); :data:`LINKS` gives the object behind it.

Examples
--------
>>> import numpy as np
>>> LINKS["logit"].inverse(np.array([0.0])), LINKS["log"].ratio_name
(array([0.5]), 'rate ratio')
"""

from __future__ import annotations

from typing import ClassVar

import lazy_loader as lazy
import numpy as np

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
special = lazy.load("scipy.special", suppress_warning=True)

__all__ = ["LINKS", "Identity", "Link", "Log", "Logit", "Probit"]


class Link:
    """A link function; subclasses define ``__call__``, ``inverse`` and ``inverse_pt``."""

    name: ClassVar[str] = ""
    #: what ``exp(beta)`` is on this link ("" where it has no such reading)
    ratio_name: ClassVar[str] = ""
    #: what the coefficients are, for labels
    scale_label: ClassVar[str] = "response scale"

    def __call__(self, mu: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inverse_pt(self, eta):
        """``g⁻¹(eta)`` as a PyTensor expression (the PyMC graph's)."""
        raise NotImplementedError


class Identity(Link):
    name = "identity"

    def __call__(self, mu):
        return mu

    def inverse(self, eta):
        return eta

    def inverse_pt(self, eta):
        return eta


class Log(Link):
    name, ratio_name, scale_label = "log", "rate ratio", "link scale: log rate"

    def __call__(self, mu):
        return np.log(mu)

    def inverse(self, eta):
        return np.exp(eta)

    def inverse_pt(self, eta):
        import pytensor.tensor as pt

        return pt.exp(eta)


class Logit(Link):
    name, ratio_name, scale_label = "logit", "odds ratio", "link scale: log odds"

    def __call__(self, mu):
        return special.logit(mu)

    def inverse(self, eta):
        return special.expit(eta)

    def inverse_pt(self, eta):
        import pytensor.tensor as pt

        return pt.sigmoid(eta)


class Probit(Link):
    name, scale_label = "probit", "link scale: probit"

    def __call__(self, mu):
        return special.ndtri(mu)

    def inverse(self, eta):
        return special.ndtr(eta)

    def inverse_pt(self, eta):
        import pytensor.tensor as pt

        return 0.5 * (1.0 + pt.erf(eta / np.sqrt(2.0)))


#: link name → its object
LINKS: dict[str, Link] = {k.name: k() for k in (Identity, Log, Logit, Probit)}
