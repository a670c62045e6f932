"""The report layer: what the book's chapters call.

* :mod:`~redundancy.report.config` -- :class:`Config`, the run's parameters;
* :mod:`~redundancy.report.cache` -- the verified result cache;
* :mod:`~redundancy.report.features` -- tasks and features of a run;
* :mod:`~redundancy.report.steps` -- the cached steps, one module per stage;
* :mod:`~redundancy.report.paper` and :mod:`~redundancy.report.verdicts` -- the paper's
  numbers and every chapter's verdict rule;
* :mod:`~redundancy.report.tables`, :mod:`~redundancy.report.plots` -- what chapters show;
* :mod:`~redundancy.report.book` -- the papermill + jupyter-book runner.

A chapter starts with ``from redundancy.report import Config, plots, steps, tables,
verdicts``.
"""

from .config import Config

__all__ = ["Config"]
