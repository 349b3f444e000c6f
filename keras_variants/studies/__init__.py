"""Studies: parsing ``--seeds`` and ``--set``, aggregates across seeds with confidence
intervals (``study``), and the lecture's claims decided from paired differences
(``claims``); seeds
added until they are decided (``sequential``); what the lecture and the book say
(``sources``, read from ``sources.toml`` beside it) and the ledger that sets them beside
our seeds (``ledger``).

Imports: ``config``, ``errors``; NumPy and SciPy. Pure functions, no I/O but reading the
package's own ``sources.toml``.
"""
