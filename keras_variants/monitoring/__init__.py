"""Monitoring a registered version on new data: the reference profile written when it is
registered (``profile``: what it saw on held-out data through the served path; ``stored``:
where it is kept, read and written without the statistics' libraries), the input
statistics it holds (``features``), the statistical tests (``signals``: pure functions),
drift against the profile (``drift``), accuracy without labels (``estimate``; a changed
class mix: ``label_shift``), the estimate's interval and when none is given (``interval``:
pure functions), the one procedure that makes an estimate for a scoring and for the known
shifts alike (``assess``), the known shifts (``shifts``) and their measurement at
registration (``ladders``), the coverage of the intervals as text for the report and the
model card (``coverage``), and the entry point a scoring calls (``check``:
:func:`check.monitor`).

Imports: ``tracking``, ``serving`` (a served model's accessors, passed in), ``model``,
``data``, ``config``, ``errors``; MLflow, NumPy, SciPy. Never TensorFlow at import time.
"""
