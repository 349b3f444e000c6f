"""What is served: the registered MLflow pyfunc models, a Keras model and its preprocessing
as one (``pyfunc``: how a served review becomes a prediction); the contract every caller
reads a served model and its answers by (``answers``: ``ServedModel``, ``Sentiment``,
``Digit``); what a request may hold and how its work is stopped (``requests``, within the
limits written once in ``limits``); the scoring server that answers HTTP requests with one
of them, every request bounded (``server``, its HTTP edge ``http_edge``, run on uvicorn by
``run``), switched to the version its alias names when the alias moves (``follow``); and its
prediction log (``prediction_log``).

Imports: ``model``, ``data``, ``config``, ``compat``, ``errors``; MLflow, uvicorn's ASGI
conventions.
Never the registry, tracking or the command line: the command line loads the model and
hands it to the server.

How a model is saved and loaded: as code, never a pickle (``saving``). Models saved before
the package was split pickled a reference to ``keras_variants.serving.SentimentModel`` (or
``DigitModel``), which ``saving`` never reads, but ``mlflow models serve`` unpickles: the
module ``__getattr__`` below resolves those names on first use only, so such models still
load there.
"""


def __getattr__(name: str) -> object:
    if name in ("SentimentModel", "DigitModel", "_KerasWithPreprocessing"):
        from keras_variants.serving import pyfunc

        return getattr(pyfunc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
