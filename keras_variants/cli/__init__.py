"""The ``variants`` command. ``main`` is the program (its commands, the error lines);
each command lives in the file of its concern: ``pipeline`` (validate, run, report),
``registry`` (promote, trust), ``predict``, ``score``, ``schedule``, ``serve``. ``options``
holds the options they share and the config built from them; ``preflight`` the checks that
refuse a bad data folder or store before anything starts.

The top layer: it may import every other package and ``flows``, each inside the command
that needs it, so that ``variants --help`` loads no heavy library.
"""
