"""Exceptions raised by the compression package.

Every error a user can cause (a bad path, a corrupt file, the wrong model)
is a subclass of :class:`CompressionError`, so the command line can report
it as one clean line instead of a TensorFlow traceback.  Errors about bad
argument values also subclass :class:`ValueError`.
"""

__all__ = [
    "CompressionError",
    "ConfigError",
    "DataError",
    "ImageReadError",
    "BitstreamError",
    "NotAGczFileError",
    "TruncatedFileError",
    "CorruptFileError",
    "ImageTooLargeError",
    "UnsupportedVersionError",
    "ModelMismatchError",
    "ModelLoadError",
    "RateError",
]


class CompressionError(Exception):
    """Base class of all errors the package raises on purpose."""


class ConfigError(CompressionError, ValueError):
    """A configuration field has an invalid value; the message names it."""


class DataError(CompressionError, ValueError):
    """Training data cannot be found or does not fit the configuration."""


class ImageReadError(CompressionError, ValueError):
    """A file is not a readable image, or is too small to code."""


class BitstreamError(CompressionError, ValueError):
    """Base class of errors found while reading a compressed file."""


class NotAGczFileError(BitstreamError):
    """The data does not start with the .gcz magic number."""


class TruncatedFileError(BitstreamError):
    """The file ends before its header or payload does."""


class CorruptFileError(BitstreamError):
    """The CRC does not match, or a header field is out of bounds."""


class ImageTooLargeError(BitstreamError):
    """The file claims more pixels than the decoding limit allows (``--max-pixels``)."""


class UnsupportedVersionError(BitstreamError):
    """The file was written by a newer format version than this reader knows."""


class ModelMismatchError(CompressionError, ValueError):
    """A file was written by a different model than the one decoding it."""


class ModelLoadError(CompressionError, ValueError):
    """A run directory or checkpoint is missing or cannot be loaded."""


class RateError(CompressionError, ValueError):
    """A target rate is below the smallest file the model can write for an image."""
