"""Search-quality evaluation (`visearch eval`): metrics, real-data suites, ranking-profile ablations, reports.

See docs/quality.md ("Evaluation harness") for the suites, the profiles and the measured figures.
"""
