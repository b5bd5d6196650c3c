"""Test helpers computed with numpy from the draws, independent of the package's own algebra."""

from __future__ import annotations

import numpy as np


def g_draws(fit) -> np.ndarray:
    """G = diag(sd) R diag(sd) per draw of the one grouping factor, from {g}_sd and {g}_corr: (chain, draw, q, q)."""
    post = fit.posterior.transpose("chain", "draw", ...)
    (g,) = fit.design.groups
    sd = post[f"{g.name}_sd"].values
    corr = post[f"{g.name}_corr"].values if f"{g.name}_corr" in post else np.eye(sd.shape[-1])
    return sd[..., :, None] * corr * sd[..., None, :]


def standardized_b(fit) -> np.ndarray:
    """w = L'(b - m) per draw and cluster, where b | beta, G, sigma, y ~ N(m, P^-1) and P = L L'.

    For every joint posterior draw, b given the other parameters is exactly this normal
    (both methods: the full sampler's stationary distribution, the collapsed method's exact
    draw), so w ~ N(0, I) whatever (beta, G, sigma) are. One grouping factor; computed with
    numpy from y, X, Z and the posterior's beta, sigma, {g}_sd, {g}_corr. Returns
    (chain, draw, level, effect).
    """
    post = fit.posterior.transpose("chain", "draw", ...)
    d = fit.design
    (g,) = d.groups
    Ginv = np.linalg.inv(g_draws(fit))
    s2 = post["sigma"].values[..., None, None] ** 2
    b = post[f"{g.name}_b"].values
    r = d.y - np.einsum("cdp,np->cdn", post["beta"].values, d.X)
    out = []
    for j in range(g.n_levels):
        rows = g.codes == j
        Z = g.Z[rows]
        P = Z.T @ Z / s2 + Ginv
        m = np.linalg.solve(P, np.einsum("nq,cdn->cdq", Z, r[..., rows])[..., None] / s2)[..., 0]
        out.append(np.einsum("cdqk,cdq->cdk", np.linalg.cholesky(P), b[:, :, j] - m))
    return np.stack(out, axis=2)
