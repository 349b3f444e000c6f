"""The data: ``.npz`` files read safely (``npz``), ragged word-id rows (``ragged``), data sets
and their splits (``datasets``), their memory-mapped form for lanes and the read cache
(``mapped``, ``cache``), and the one definition of every encoding from
raw input to model input (``preprocessing``; MNIST's digit layout it brings images to, in
numbers and words: ``layout``).

Imports: :mod:`keras_variants.config` and :mod:`keras_variants.errors`; NumPy, never
TensorFlow at import time, MLflow or Prefect.
"""
