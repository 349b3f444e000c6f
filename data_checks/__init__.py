"""Great Expectations suites for the pipeline's data, written as code.

``tables`` turns loaded arrays into small summary tables (one row per image, review, split or
class); ``suites`` says, one expectation per line, what must hold for each table and why;
``runner`` validates the tables with Great Expectations and explains every failure.
"""
