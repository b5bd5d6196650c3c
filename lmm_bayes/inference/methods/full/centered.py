"""The full method of a GLMM with hierarchical centering: cluster means sampled around β (``centered=True``).

Non-centered b (the default) mixes badly when every cluster holds much data (measured in
``benchmarks/RESULTS_glmm.md``: min ESS 3 to 8 of 1000 draws at 1,000 trials per subject), and
plainly centered b trade off with β along a ridge instead. Hierarchical centering
(Gelfand, Sahu & Carlin 1995) samples each cluster's own effect, ``c = β + b``, around its
population value: ``c_j ~ N(β, G)``, and a nested factor's around its parent cluster's,
``c_{jk} ~ N(c_j, τ²)``; the linear predictor uses the finest ``c`` of every effect, and
β enters only as the centre of the clusters, so neither ridge exists.

An effect is centred on β when the grouping factor's Z column equals X's column of the
same name on every row (``Intercept``, a slope ``x`` of the same variable), on the parent
factor's effect when the two Z columns are equal; any other effect keeps centre 0
(``c = b``). ``{g}_b = c - centre`` is stored, so the posterior layout is the usual one.
"""

from __future__ import annotations

import lazy_loader as lazy
import numpy as np

from lmm_bayes import names
from lmm_bayes.inference.glm import add_glm_likelihood
from lmm_bayes.inference.graph import add_fixed_effects, add_group_covariance
from lmm_bayes.inference.layout import b_name, codes_name, model_coords, z_name
from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.priors import Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")
pytensor = lazy.load("pytensor")  # its .tensor (imported by pytensor itself) is the graphs' algebra

__all__ = ["build_hierarchical_model", "centring_plan", "uses_X"]


def _parents_first(design: Design) -> list[GroupDesign]:
    by_name = {g.name: g for g in design.groups}

    def depth(g: GroupDesign) -> int:
        return 0 if g.parent is None or g.parent not in by_name else 1 + depth(by_name[g.parent])

    return sorted(design.groups, key=depth)


def centring_plan(design: Design) -> dict[tuple[str, int], tuple[str, int] | None]:
    """For every (factor, effect index): its centre, ``("beta", column)``, ``(parent, effect)`` or None.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmm_bayes.spec.glmm import GeneralizedMixedModel as GLMM
    >>> df = pd.DataFrame({"y": np.arange(24) % 3, "x": np.arange(24.0), "s": np.repeat(list("ab"), 12),
    ...                    "n": np.tile(np.repeat(list("pqr"), 4), 2)})
    >>> centring_plan(GLMM("y ~ x + (1 + x | s) + (1 | s:n)", df, family="poisson").design)
    {('s', 0): ('beta', 0), ('s', 1): ('beta', 1), ('s:n', 0): ('s', 0)}
    """
    by_name = {g.name: g for g in design.groups}
    plan: dict[tuple[str, int], tuple[str, int] | None] = {}
    taken: set[int] = set()
    for g in _parents_first(design):
        parent = by_name.get(g.parent) if g.parent else None
        for k, effect in enumerate(g.effects):
            centre = None
            if parent is not None and effect in parent.effects:
                kp = parent.effects.index(effect)
                if np.array_equal(parent.Z[:, kp], g.Z[:, k]):
                    centre = (parent.name, kp)
            if centre is None and effect in design.X_columns:
                j = design.X_columns.index(effect)
                if j not in taken and np.array_equal(design.X[:, j], g.Z[:, k]):
                    centre = ("beta", j)
                    taken.add(j)
            plan[(g.name, k)] = centre
    return plan


def _absorbed(plan: dict) -> set[int]:
    return {c[1] for c in plan.values() if c is not None and c[0] == "beta"}


def uses_X(design: Design) -> bool:
    """Whether the graph reads X: not when every column is a cluster effect's centre (a compiled
    model drops an unused ``pm.Data`` and refuses new values for it)."""
    return len(_absorbed(centring_plan(design))) < design.X.shape[1]


def build_hierarchical_model(design: Design, priors: Priors) -> pm.Model:
    """The full GLMM with every cluster's effects ``c = centre + b`` sampled (see the module docstring)."""
    plan = centring_plan(design)
    absorbed = _absorbed(plan)
    consumed = {c for c in plan.values() if c is not None and c[0] != "beta"}
    with pm.Model(coords=model_coords(design)) as model:
        y = pm.Data(names.Y_OBS, design.y, dims=names.OBS)
        beta = add_fixed_effects(design, priors)
        keep = [j for j in range(design.X.shape[1]) if j not in absorbed]
        if keep:
            X = pm.Data(names.X, design.X, dims=(names.OBS, names.COEF))
            eta = pytensor.tensor.dot(X[:, keep], beta[keep])
        else:
            eta = pytensor.tensor.zeros(design.n)
        own: dict[str, pytensor.tensor.TensorVariable] = {}
        gp_by_name = dict(priors.groups)
        for g in _parents_first(design):
            _, L = add_group_covariance(g, gp_by_name[g.name])
            parts = []
            for k in range(g.n_effects):
                centre = plan[(g.name, k)]
                if centre is None:
                    parts.append(pytensor.tensor.zeros(g.n_levels))
                elif centre[0] == "beta":
                    parts.append(pytensor.tensor.ones(g.n_levels) * beta[centre[1]])
                else:
                    parent = design.group(centre[0])
                    parts.append(own[parent.name][np.asarray(g.parent_codes), centre[1]])
            mean = pytensor.tensor.stack(parts, axis=1)
            c = pm.MvNormal(names.centred_name(g.name), mu=mean, chol=L, dims=(g.name, g.effect_dim))
            pm.Deterministic(b_name(g), c - mean, dims=(g.name, g.effect_dim))
            own[g.name] = c
            codes = pm.Data(codes_name(g), g.codes, dims=names.OBS)
            Zg = pm.Data(z_name(g), g.Z, dims=(names.OBS, g.effect_dim))
            used = [k for k in range(g.n_effects) if (g.name, k) not in consumed]
            if used:
                eta = eta + pytensor.tensor.sum(Zg[:, used] * c[codes][:, used], axis=1)
        add_glm_likelihood(design, priors, eta, y)
    return model
