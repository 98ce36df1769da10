"""Registered experiments, one module per family; each module calls ``register`` at import.

Every module here whose name does not start with ``_`` is imported by the registry.
"""
