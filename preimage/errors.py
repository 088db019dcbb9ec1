"""Errors that preimage reports to a user as one line, without a traceback.

Every module raises :class:`PreimageError` (or a subclass) for bad input: the message names the file,
the place in it (line:column, layer, tensor) and what was expected. The CLI prints ``error: <message>``
and exits with status 2; the Python API lets the exception through.
"""


class PreimageError(Exception):
    """A problem with the user's input, reported as one line."""

    def __init__(self, message, *, path=None, where=None):
        self.path = str(path) if path is not None else None
        self.where = where
        prefix = ""
        if self.path:
            prefix = self.path + (f":{where}" if where else "") + ": "
        elif where:
            prefix = f"{where}: "
        text = prefix + str(message)
        # one line, whatever a damaged file put into the names the message quotes (a class name, a layer name)
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))


class FormatError(PreimageError):
    """A file is not of the format it claims to be, or is damaged."""


class UnsupportedError(PreimageError):
    """The input uses a feature (layer type, module, operator) preimage does not support."""
