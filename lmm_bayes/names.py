"""The posterior's names, each spelled once: variables, dims and what a factor's name takes on.

Every stage that names or reads a variable of a posterior, a dim, or the data of a PyMC graph
takes the spelling from here: :mod:`lmm_bayes.inference.layout` (which adds the algebra and
takes a :class:`~lmm_bayes.spec.design.GroupDesign` as well as a name), the graph builders,
and :mod:`lmm_bayes.spec.validate`, whose check that a grouping factor is not named like one of
the package's own things (:data:`RESERVED_GROUP_NAMES`, :data:`GROUP_SUFFIXES`) is derived from
the same definitions, so a name added here is checked without another edit.

The module sits at the bottom of the house, beside :mod:`lmm_bayes.errors`: it imports nothing
of the package, and any stage may import it. Functions take a grouping factor's name (a str).

==========================  ===================================  ===================================
name                        dims                                 what
==========================  ===================================  ===================================
``beta``                    ``coef``                             fixed effects
``sigma``                   —                                    residual SD
``{g}_sd``                  ``{g}_effect``                       SDs of factor g's effects
``{g}_corr``                ``{g}_effect``, ``{g}_effect_bis``   correlations (correlated factors)
``{g}_b``                   ``{g}``, ``{g}_effect``              cluster deviations b
``{g}_cov``                 ``{g}_effect``, ``{g}_effect_bis``   G (simulated truth)
``{g}_coef``                ``{g}``, ``{g}_effect``              every cluster's own effects
``{g}_codes``, ``{g}_Z``    ``obs`` (, ``{g}_effect``)           a factor's design (constant data)
``{g}_sd_indep``            —                                    graph: SDs of one-effect blocks
``{g}_chol_cov[_i]``        —                                    graph: LKJ Cholesky of block i
``{g}_z``                   ``{g}``, ``{g}_effect``              graph: standard-normal offsets
``{g}_pair``                —                                    tables: a correlation's pair
``y``, ``X``, ``y_obs``     ``obs`` (, ``coef``)                 the likelihood and graph data
==========================  ===================================  ===================================

Examples
--------
>>> from lmm_bayes import names
>>> names.sd_name("Subject"), names.effect_dim("Subject"), names.bis(names.effect_dim("Subject"))
('Subject_sd', 'Subject_effect', 'Subject_effect_bis')
>>> "Subject_sd"[len("Subject"):] in names.GROUP_SUFFIXES, "beta" in names.RESERVED_GROUP_NAMES
(True, True)
"""

from __future__ import annotations

__all__ = [
    "BETA",
    "BETA_PARTS",
    "CHAIN",
    "COEF",
    "DIMS",
    "DRAW",
    "GROUP_SUFFIXES",
    "GROUP_SUFFIX_STEMS",
    "OBS",
    "OFFSET",
    "RESERVED_GROUP_NAMES",
    "SIGMA",
    "SUFFIXES",
    "TRIALS",
    "UNCHECKED_NAMES",
    "UNCHECKED_SUFFIXES",
    "VARIABLES",
    "X",
    "Y",
    "Y_MARGINAL",
    "Y_OBS",
    "b_name",
    "bis",
    "centred_name",
    "chol_cov_name",
    "codes_name",
    "coef_name",
    "corr_name",
    "cov_name",
    "effect_dim",
    "pair_dim",
    "sd_indep_name",
    "sd_name",
    "z_name",
    "z_offsets_name",
]

# ------------------------------------------------------------------ the posterior's own names

CHAIN = "chain"
DRAW = "draw"
OBS = "obs"
COEF = "coef"
#: the dims every posterior has (ArviZ's ``chain`` and ``draw``, the rows, the fixed effects)
DIMS = (CHAIN, DRAW, OBS, COEF)

BETA = "beta"
SIGMA = "sigma"
#: the likelihood (observed) and the graph's data: the fixed-effects matrix and the response
Y = "y"
X = "X"
Y_OBS = "y_obs"
#: the variables every model holds
VARIABLES = (BETA, SIGMA, Y, X, Y_OBS)

#: Names a grouping factor (a dim of the posterior, named after its column) cannot take:
#: PyMC and xarray refuse a dim named like a variable, or merge two dims.
RESERVED_GROUP_NAMES = DIMS + VARIABLES

# ------------------------------------------------------------------ what a factor's name takes on

#: every suffix appended to a factor's name, by what it names; the functions below read their
#: suffix from here (a new one must be added here to be spelled), so the check of
#: :mod:`lmm_bayes.spec.validate` (:data:`GROUP_SUFFIXES`) cannot miss it
SUFFIXES = {
    "effect": "_effect",
    "effect_bis": "_effect_bis",
    "sd": "_sd",
    "sd_indep": "_sd_indep",
    "corr": "_corr",
    "chol_cov": "_chol_cov",
    "z_offsets": "_z",
    "b": "_b",
    "cov": "_cov",
    "coef": "_coef",
    "codes": "_codes",
    "Z": "_Z",
    "pair": "_pair",
}
_BIS = "_bis"

#: What the layout and the graphs append to a factor's name (``Subject_effect``, ``Subject_sd``,
#: ...): a factor named like another's name plus one of these clashes with it.
GROUP_SUFFIXES = tuple(SUFFIXES.values())
#: the suffixes that may be followed by more (``{g}_chol_cov_2``: the Cholesky of the block
#: starting at effect 2, when a factor has several blocks)
GROUP_SUFFIX_STEMS = (SUFFIXES["chol_cov"],)

# Names the graphs make that the check of spec.validate does not refuse today: adding them
# would refuse factor names accepted so far, a decision of its own (issue 32).
#: ``beta_parts`` (the fixed effects before ``beta``), the collapsed potential, and the GLM's data
BETA_PARTS = f"{BETA}_parts"
Y_MARGINAL = "y_marginal"
OFFSET = "offset"
TRIALS = "trials"
UNCHECKED_NAMES = (BETA_PARTS, Y_MARGINAL, OFFSET, TRIALS)
#: ``{g}_c``: every cluster's own effects in the centred full GLMM graph
UNCHECKED_SUFFIXES = ("_c",)


def effect_dim(group: str) -> str:
    """``"{g}_effect"``: the dim of a factor's effects.

    Examples
    --------
    >>> effect_dim("Subject")
    'Subject_effect'
    """
    return group + SUFFIXES["effect"]


def bis(dim: str) -> str:
    """The second dim of a square matrix over ``dim`` (``"Subject_effect_bis"``).

    Examples
    --------
    >>> bis(effect_dim("Subject")) == "Subject" + SUFFIXES["effect_bis"]
    True
    """
    return dim + _BIS


def pair_dim(group: str) -> str:
    """``"{g}_pair"``: the dim of a factor's correlations in tables (one per pair of effects).

    Examples
    --------
    >>> pair_dim("Subject")
    'Subject_pair'
    """
    return group + SUFFIXES["pair"]


def sd_name(group: str) -> str:
    """``"{g}_sd"``: the SDs of a factor's effects.

    Examples
    --------
    >>> sd_name("Subject")
    'Subject_sd'
    """
    return group + SUFFIXES["sd"]


def corr_name(group: str) -> str:
    """``"{g}_corr"``: the correlation matrix of a factor's effects.

    Examples
    --------
    >>> corr_name("Subject")
    'Subject_corr'
    """
    return group + SUFFIXES["corr"]


def b_name(group: str) -> str:
    """``"{g}_b"``: every cluster's deviations b.

    Examples
    --------
    >>> b_name("subject:neuron")
    'subject:neuron_b'
    """
    return group + SUFFIXES["b"]


def cov_name(group: str) -> str:
    """``"{g}_cov"``: G, the covariance of a factor's effects (in simulated truth).

    Examples
    --------
    >>> cov_name("Subject")
    'Subject_cov'
    """
    return group + SUFFIXES["cov"]


def coef_name(group: str) -> str:
    """``"{g}_coef"``: every cluster's own effects β + b (or a no-pooling fit's coefficients).

    Examples
    --------
    >>> coef_name("Subject")
    'Subject_coef'
    """
    return group + SUFFIXES["coef"]


def codes_name(group: str) -> str:
    """``"{g}_codes"``: the level index of every row (constant data).

    Examples
    --------
    >>> codes_name("Subject")
    'Subject_codes'
    """
    return group + SUFFIXES["codes"]


def z_name(group: str) -> str:
    """``"{g}_Z"``: the per-row values multiplying a factor's effects (constant data).

    Examples
    --------
    >>> z_name("Subject")
    'Subject_Z'
    """
    return group + SUFFIXES["Z"]


def z_offsets_name(group: str) -> str:
    """``"{g}_z"``: the standard-normal offsets of the non-centred graph (``b = z Lᵀ``).

    Examples
    --------
    >>> z_offsets_name("Subject")
    'Subject_z'
    """
    return group + SUFFIXES["z_offsets"]


def sd_indep_name(group: str) -> str:
    """``"{g}_sd_indep"``: in the graph, the SDs of a factor's one-effect blocks.

    Examples
    --------
    >>> sd_indep_name("Subject")
    'Subject_sd_indep'
    """
    return group + SUFFIXES["sd_indep"]


def chol_cov_name(group: str, first: int | None = None) -> str:
    """``"{g}_chol_cov"``, or ``"{g}_chol_cov_{first}"`` for the block starting at effect ``first``.

    The graph's ``LKJCholeskyCov`` of a correlated block; ``first`` is given only when the
    factor has several blocks.

    Examples
    --------
    >>> chol_cov_name("Subject"), chol_cov_name("Subject", 2)
    ('Subject_chol_cov', 'Subject_chol_cov_2')
    >>> chol_cov_name("Subject", 2).startswith("Subject" + GROUP_SUFFIX_STEMS[0])
    True
    """
    stem = group + SUFFIXES["chol_cov"]
    return stem if first is None else f"{stem}_{first}"


def centred_name(group: str) -> str:
    """``"{g}_c"``: every cluster's own effects ``c = centre + b`` in the centred full GLMM graph.

    Examples
    --------
    >>> centred_name("subject")
    'subject_c'
    """
    return group + UNCHECKED_SUFFIXES[0]
