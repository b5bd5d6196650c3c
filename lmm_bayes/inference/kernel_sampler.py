"""A packed collapsed model as a nutpie model, sampled through the kernel compiled once per machine.

nutpie calls the kernel's C entry points (:mod:`lmm_bayes.inference.kernel`) for each
gradient, from its own threads and without Python in between, so no PyMC graph is
compiled: a new formula in a new process costs the ~0.5 s of loading numba's on-disk
cache (:mod:`lmm_bayes.inference.kernel_loader`). The model is handed to nutpie as its
own ``CompiledPyMCModel`` (the class nutpie's numba backend fills with compiled PyMC
functions), here filled with the kernel's C entry points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmm_bayes.inference.kernel_loader import load
from lmm_bayes.inference.packing import KernelModel

__all__ = ["nutpie_model"]


def nutpie_model(model: KernelModel, coords: dict[str, Any]):
    """The packed model as a nutpie compiled model whose log density is the C kernel.

    Falls back to nutpie's public Python-callback interface (the same model, one Python
    call per gradient) when nutpie's numba-backend class is not what this module expects,
    and takes it for a model with its own marginal likelihood (crossed designs, whose
    blocked Cholesky costs far more than the Python call: :mod:`lmm_bayes.inference.crossed`).
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
