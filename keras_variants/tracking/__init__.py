"""MLflow tracking: the store and its client (``store``), cross-process locks (``locks``),
writing a run's parent and trial runs (``runs``), their data inputs (``datasets``), each
trial's served model as a logged model (``logged_models``), what a trial cost the host
(``system_metrics``), reading runs back as records (``records``), trial keys for reusing
unchanged work (``trial_key``), and the links into the MLflow UI that every output carries
(``ui_links``).

Imports: ``lanes`` (result types only), ``data``, ``config``, ``compat``, ``errors``; MLflow.
Never TensorFlow.
"""
