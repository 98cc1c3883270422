"""Runnable examples of itnio_async in real programs (each module's docstring says how to run it).

A package so that the examples share ``examples/settings.py`` (the environment, the one
client) and ``examples/records.py`` (their JSON), and so that ``uvicorn
examples.fastapi_app:app``, ``python -m examples.<name>`` (from the repository's root) and
the tests can import them.
"""
