"""The MLflow model registry: registered versions and their aliases (``versions``), the
SHA-256 of every file of a version (``integrity``) and the one way to load a version, only if
its files are those registered (``loading``), the test split as users send it and whether a
served model is right on each input (``served_accuracy``), and the promotion rule
(``promotion_rule``: where promotion is decided, a paired test), the gate that runs it
(``gate``), the guard that gives a champion set by hand the gate's evidence and reverts it
unless it stands (``guard``), and each version's model card (``model_card``: written at
registration and when the gate or the guard decides).

Imports: ``monitoring`` (a new version's reference profile), ``tracking``, ``lanes`` (to
score in a lane), ``serving`` (inside the lane), ``data``, ``config``, ``errors``; MLflow,
SciPy (the paired test). Never TensorFlow at import time.
"""
