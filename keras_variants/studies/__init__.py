"""Studies: parsing ``--seeds`` and ``--set``, aggregates across seeds with confidence
intervals, and the lecture's claims decided from paired differences (``study``).

Imports: ``config``, ``errors``; NumPy and SciPy. Pure functions, no I/O.
"""
