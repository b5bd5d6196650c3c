"""A packed collapsed model as a nutpie model, sampled through the kernel compiled once per machine.

nutpie calls the kernel's C entry points (:mod:`lmm_bayes.inference.methods.collapsed.kernel`) for each
gradient, from its own threads and without Python in between, so no PyMC graph is
compiled: a new formula in a new process costs the ~0.5 s of loading numba's on-disk
cache (:mod:`lmm_bayes.inference.methods.kernel_loader`). The model is handed to nutpie as its
own ``CompiledPyMCModel`` (the class nutpie's numba backend fills with compiled PyMC
functions), here filled with the kernel's C entry points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from lmm_bayes.inference import sampling
from lmm_bayes.inference.layout import model_coords
from lmm_bayes.inference.methods.collapsed.packing import KernelModel
from lmm_bayes.inference.methods.kernel_loader import is_loaded, load
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec.priors import Priors

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.inference.methods.base import Method, Run

__all__ = ["nutpie_model", "sample_kernel"]


def sample_kernel(method: Method, priors: Priors, settings: SamplerSettings, keep_b: str) -> Run:
    """Sample ``method.kernel_model(priors)`` with nutpie and complete the draws (the collapsed,
    crossed and Laplace methods): no graph to compile, the kernel is compiled once per machine."""
    reused = is_loaded()
    coords = {k: v for k, v in model_coords(method.design).items() if k != "obs"}
    compiled = nutpie_model(method.kernel_model(priors), coords)  # type: ignore[attr-defined]
    # chains already run on every core: a multi-threaded BLAS in each (the crossed method's
    # LAPACK calls) would make its threads spin against the other chains' (measured 50x slower
    # at 160 effects); the draws of b, one small factorisation each, gain nothing from threads either
    with threadpool_limits(1, user_api="blas"):
        raw, stats = sampling.sample_nutpie(compiled, settings)
        posterior = method.complete(raw, settings.seed, keep_b)
    return posterior, stats, reused


def nutpie_model(model: KernelModel, coords: dict[str, Any]):
    """The packed model as a nutpie compiled model whose log density is the C kernel.

    Falls back to nutpie's public Python-callback interface (the same model, one Python
    call per gradient) when nutpie's numba-backend class is not what this module expects,
    and takes it for a model with its own marginal likelihood (crossed designs, whose
    blocked Cholesky costs far more than the Python call: :mod:`lmm_bayes.inference.methods.crossed.system`).
    """
    if model.marginal is not None:
        return _python_callback_model(model, coords)
    try:
        from nutpie.compile_pymc import CompiledPyMCModel
    except ImportError:
        return _python_callback_model(model, coords)

    kernel = load()
    names, shapes, dims = model.variables()
    sizes = [int(np.prod(shape)) for shape in shapes]
    # the kernel reads the model's arrays through these addresses: they live as long as `model`
    user_data = np.array([model.ints.ctypes.data, model.ints.size, model.floats.ctypes.data, model.floats.size],
                         dtype=np.int64)

    try:
        return CompiledPyMCModel(
            _n_dim=model.n_dim,
            dims=dims,
            _coords={k: list(v) for k, v in coords.items()},
            _shapes=dict(zip(names, map(tuple, shapes))),
            compiled_logp_func=kernel.logp_cfunc,
            compiled_expand_func=kernel.expand_cfunc,
            initial_point_func=_initial_point(model),
            shared_data={"model": model},  # keeps the arrays alive with the compiled model
            shared_var_keys={},
            user_data=user_data,
            n_expanded=sum(sizes),
            shape_info=(names, None, [tuple(s) for s in shapes]),
            logp_func=None,
            expand_func=None,
        )
    except TypeError:  # another nutpie version's fields
        return _python_callback_model(model, coords)


def _initial_point(model: KernelModel):
    def initial_point(seed):
        # like PyMC's default: the prior's centre, jittered by U(-1, 1) on the unconstrained scale
        return model.start + np.random.default_rng(seed).uniform(-1.0, 1.0, model.n_dim)

    return initial_point


def _python_callback_model(model: KernelModel, coords: dict[str, Any]):
    """The packed model through nutpie's public ``from_pyfunc`` (one Python call per gradient)."""
    from nutpie.compiled_pyfunc import from_pyfunc

    names, shapes, dims = model.variables()
    return from_pyfunc(
        model.n_dim, model.chain_log_density, lambda seed1, seed2, chain: model.expand,
        [np.dtype("float64")] * len(names), shapes, names,
        coords={k: list(v) for k, v in coords.items()}, dims=dims, make_initial_point_fn=_initial_point(model),
    )
