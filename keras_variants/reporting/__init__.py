"""What a user reads: the comparison report (``report``: what it says; ``report_figures``,
``report_pages``: its plots and its Markdown and HTML pages; ``calibration_report`` and
``calibration_figures``; ``ledger_report``: the lecture's, the book's and our numbers;
``findings``, ``plots``), writing and logging it once per change (``publish``), and the
terminal's progress lines and summary table (``progress``).

Imports: ``registry``, ``studies``, ``tracking``, ``config``, ``errors``; matplotlib on use.
Never TensorFlow.
"""
