"""Scoring new data with a registered version (``variants score``): reading and checking
each input kind (``inputs``) into rows: model inputs, labels and rejected rows with their
reasons (``rows``); scoring them in
batches through the version's own pyfunc ``predict`` (``batch``), the files and the summary
a scoring leaves (``outputs``), and its MLflow run (``runs``).

Imports: ``reporting``, ``registry``, ``tracking``, ``serving``, ``data``, ``config``,
``errors``, and ``monitoring`` (the drift check, inside a function); MLflow, pandas.
TensorFlow only through the loaded model.
"""
