"""The MLflow model registry: registered versions and their aliases (``versions``), the
SHA-256 of every file of a version (``integrity``) and the one way to load a version, only if
its files are those registered (``loading``), the test split as users send it and a served
model's accuracy on it (``served_accuracy``), and the promotion gate (``gate``: where
promotion is decided).

Imports: ``monitoring`` (a new version's reference profile), ``tracking``, ``lanes`` (to
score in a lane), ``serving`` (inside the lane), ``data``, ``config``, ``errors``; MLflow.
Never TensorFlow at import time.
"""
