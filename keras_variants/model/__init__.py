"""The Keras models: builders (``builders``, pure Keras), training and test evaluation
(``training``), plain and Monte Carlo dropout inference shared by evaluation, the served
model and the gate (``inference``), calibration (``calibration``) and far-from-data sets
(``uncertainty``).

Imports: ``data``, ``config``, ``interrupts``, ``errors``. Never MLflow, Prefect or files.
"""
