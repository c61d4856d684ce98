"""Errors meant for the user: the CLI prints their message without a traceback.

Raise them for bad input (a missing file, a wrong field, a corrupt checkpoint)
with a message that names the file or field and says what to do. Bugs keep
raising ordinary exceptions so their tracebacks stay visible.
"""


class LlamaforgeError(Exception):
    """Base class of errors caused by the user's input or environment."""


class ConfigError(LlamaforgeError, ValueError):
    """A configuration field is missing, unknown or out of range."""


class CheckpointError(LlamaforgeError, ValueError):
    """A checkpoint or model folder is missing, incomplete, corrupt or mismatched."""


class DataError(LlamaforgeError, ValueError):
    """Input data cannot be read as the format it claims to be."""
