"""Runnable examples of itnio_async in real programs (each module's docstring says how to run it).

A package only so that ``uvicorn examples.fastapi_app:app`` and the tests can import them.
"""
