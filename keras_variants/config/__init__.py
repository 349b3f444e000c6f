"""Configuration as plain typed data: the variants and their data sets (``variants``), a
trial (``trials``: a variant at one sweep point with one seed, the unit of every run), and
a run's parameters, profiles and studies (``pipeline``).

Imports: pydantic and :mod:`keras_variants.errors` only; every other layer may import it.
"""
