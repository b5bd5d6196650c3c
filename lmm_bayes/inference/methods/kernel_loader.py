"""Loading the compiled kernels (:mod:`lmm_bayes.inference.methods.collapsed.kernel`,
:mod:`lmm_bayes.inference.methods.crossed.kernel` for crossed designs,
:mod:`lmm_bayes.inference.methods.gibbs.kernel` for the Gibbs sampler and
:mod:`lmm_bayes.inference.methods.laplace.kernel` for a GLMM's Laplace method), and saying so when
they compile.

Shared by those four methods, so it sits beside their packages rather than in one of them; a kernel
is imported only here, at its first use, so ``import lmm_bayes`` never imports numba.

Importing the kernel loads it from numba's on-disk cache (about half a second) or, the first
time on a machine or after the package changed, compiles it (about a minute on 2 cores).
:func:`load` does that import once per process and prints one line when it takes longer
than a few seconds, naming the folder where the result is cached for later processes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

__all__ = ["cache_location", "is_loaded", "load", "load_crossed", "load_gibbs", "load_laplace", "warm_up"]

#: loading from the cache takes under a second; longer than this means numba is compiling
NOTICE_AFTER_S = 3.0
_KERNEL = "lmm_bayes.inference.methods.collapsed.kernel"
_CROSSED = "lmm_bayes.inference.methods.crossed.kernel"
_GIBBS = "lmm_bayes.inference.methods.gibbs.kernel"
_LAPLACE = "lmm_bayes.inference.methods.laplace.kernel"
_NOTICED: list[str] = []
#: what each compiled file is, for the notice printed while it compiles
_WHAT = {_KERNEL: "the collapsed sampler's kernel", _CROSSED: "the crossed method's loops",
         _GIBBS: "the Gibbs sampler's sweeps", _LAPLACE: "the GLMM Laplace method's kernel"}


def is_loaded() -> bool:
    """Whether this process has loaded the kernel already."""
    return _KERNEL in sys.modules


def cache_location(module: str = _KERNEL) -> str:
    """The folder numba caches a compiled file in (``NUMBA_CACHE_DIR`` when set, else next to the source
    or, where that is not writable, the user's cache folder); the collapsed kernel's by default."""
    import numba

    if numba.config.CACHE_DIR:
        return str(numba.config.CACHE_DIR)
    # numba caches each compiled file beside its source, in its method's folder
    here = Path(importlib.util.find_spec(module).origin).resolve().parent / "__pycache__"
    return str(here) if here.parent.exists() and _writable(here.parent) else "the user's numba cache folder"


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK)


def load() -> ModuleType:
    """The kernel module, imported once per process (with a notice while it compiles)."""
    return _import_with_notice(_KERNEL)


def load_crossed() -> ModuleType:
    """The crossed method's compiled loops, imported once per process (with a notice while they compile)."""
    return _import_with_notice(_CROSSED)


def load_gibbs() -> ModuleType:
    """The Gibbs sampler's compiled sweeps, imported once per process (with a notice while they compile)."""
    return _import_with_notice(_GIBBS)


def load_laplace() -> ModuleType:
    """The Laplace method's compiled Newton modes, gradient and proposals, imported once per process."""
    return _import_with_notice(_LAPLACE)


def _import_with_notice(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    done = threading.Event()

    def notice() -> None:
        if not done.wait(NOTICE_AFTER_S) and name not in _NOTICED:
            _NOTICED.append(name)  # one notice a process for each compiled file
            print(
                f"lmm-bayes: compiling {_WHAT[name]} once for this machine "
                f"(about a minute); later models and processes load it from {cache_location(name)}",
                file=sys.stderr, flush=True,
            )

    threading.Thread(target=notice, daemon=True).start()
    try:
        return importlib.import_module(name)
    finally:
        done.set()


def warm_up() -> float:
    """Load (or compile) every compiled kernel now (collapsed, crossed, Gibbs, Laplace); returns the seconds it took.

    ``bash run.sh`` calls it when it sets a machine up, so that a user's first fit does not wait.

    Examples
    --------
    >>> warm_up() >= 0
    True
    """
    start = time.perf_counter()
    load()
    load_crossed()
    load_gibbs()
    load_laplace()  # a user's first GLMM would otherwise wait for it
    return time.perf_counter() - start
