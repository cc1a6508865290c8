"""The analyst's replay report: the stream's alerts and step statistics joined with the held-back labels.

``replay.report.evaluate`` holds the alert verdicts and scores that the demo's summary uses too.
"""
