"""User-facing errors.

Anything a user can cause (a typo in a config, a missing data folder, a checkpoint
of the wrong model) raises a subclass of :class:`ClassbenchError`.  Its message
says what is wrong and how to fix it; the command line prints it as one
paragraph and exits with status 2, never with a traceback.
"""


class ClassbenchError(Exception):
    """An error the user can fix; the message is shown as is."""


class ConfigError(ClassbenchError):
    """A config file or override is invalid."""


class DataError(ClassbenchError):
    """A dataset is missing, corrupt, or not in the expected format."""


class CheckpointError(ClassbenchError):
    """A checkpoint cannot be loaded into the requested model."""


class NonFiniteLossError(ClassbenchError):
    """Training produced a NaN or infinite loss and the policy is to stop."""


class TrainingInterrupted(ClassbenchError):
    """SIGINT or SIGTERM arrived; a resumable checkpoint has been written."""
