"""Domain operations: plain functions that take the acting user and flush, never commit.

Views and CLI commands call them and commit once at the edge.
"""


class ServiceError(ValueError):
    """A request the domain refuses, with a message meant for the user."""
