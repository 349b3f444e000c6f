"""The Keras models: builders (``builders``, pure Keras), training and test evaluation
(``training``; IMDb's dense models train on word-id sets through a twin that shares their
variables, ``word_sets``), plain and Monte Carlo dropout inference shared by evaluation, the served
model and the gate (``inference``), calibration (``calibration``) and far-from-data sets
(``uncertainty``).

Imports: ``data``, ``config``, ``interrupts``, ``errors``. Never MLflow, Prefect or files.
"""
