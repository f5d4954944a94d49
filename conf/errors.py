"""The one base class of the errors a user can fix.

The CLI prints these as one line and exits 2; anything else is a bug and keeps its traceback, so a
real defect is never disguised as a config mistake.
"""


class DogbreedsError(Exception):
    """A mistake the user can fix; the message says how."""
