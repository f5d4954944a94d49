"""What tests share that is not a fixture: constants, builders and waiting, one concern per module.

Fixtures live in ``tests/conftest.py``; test modules import from here, never from each other.
"""
