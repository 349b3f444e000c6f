"""What a user reads: the comparison report (``report``, ``calibration_report``,
``findings``, ``plots``), writing and logging it once per change (``publish``), and the
terminal's progress lines and summary table (``progress``).

Imports: ``registry``, ``studies``, ``tracking``, ``config``, ``errors``; matplotlib on use.
Never TensorFlow.
"""
