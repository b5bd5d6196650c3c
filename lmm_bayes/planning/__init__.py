"""Design analysis: how many subjects, neurons and trials a study needs, by simulation and fitting.

The user's entry is :func:`lmm_bayes.plan_study` (:mod:`lmm_bayes.api.planning`). Below it:
the planned hierarchy, its grid and each simulation's seeds (:mod:`~lmm_bayes.planning.hierarchy`),
the truth and the reported quantities (:mod:`~lmm_bayes.planning.truth`), the runs on the
calibration stage's executors with each design point kept on disk
(:mod:`~lmm_bayes.planning.runner`), the operating characteristics
(:mod:`~lmm_bayes.planning.metrics`), the result (:mod:`~lmm_bayes.planning.result`) and its
curves (:mod:`~lmm_bayes.planning.plots`).
"""
