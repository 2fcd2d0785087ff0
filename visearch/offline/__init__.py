"""Offline tooling: model builds and parity checks, trained heads, sample datasets, evaluation, rank fitting.

Runs on a build or training machine (the ``build``, ``data`` and ``eval`` extras: torch, converters,
sample-photo packages), never in a serving process: no service and nothing in ``visearch.shared`` imports
this package (import-linter contract in pyproject.toml), and the runtime image leaves it out
(``deploy/docker/check_runtime.py``). It sits above the services: a model build may call a service's own
pre- and post-processing to check that the exported model and the serving code agree.
"""
