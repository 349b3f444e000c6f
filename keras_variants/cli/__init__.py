"""The ``variants`` command: its commands and options (``main``), the checks that refuse a
bad data folder or store before anything starts (``preflight``), ``variants predict``'s
lines (``predict``) and ``variants serve``, which starts the scoring server (``serve``).

The top layer: it may import every other package and ``flows``, each inside the command
that needs it, so that ``variants --help`` loads no heavy library.
"""
