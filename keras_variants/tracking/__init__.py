"""MLflow tracking: the store and its client (``store``), cross-process locks (``locks``),
writing a run's parent and trial runs (``runs``), their data inputs (``datasets``), each
trial's served model as a logged model (``logged_models``), what a trial cost the host
(``system_metrics``), reading runs back as records (``records``), and trial keys for reusing
unchanged work (``trial_key``).

Imports: ``lanes`` (result types only), ``data``, ``config``, ``errors``; MLflow. Never
TensorFlow.
"""
