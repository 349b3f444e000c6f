"""Where a run's TensorFlow work happens: the work itself as functions from picklable specs
to picklable results (``jobs``: train a trial and save its served model), and the lean lane
processes, or the calling process, that run it (``pool``).

Imports: ``serving``, ``model`` (inside the lane only), ``data``, ``config``, ``runtime``,
``interrupts``, ``errors``. The orchestrating process imports this package without
TensorFlow.
"""
