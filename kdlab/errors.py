"""The error raised when compressed data cannot be read back."""


class CompressedFormatError(ValueError):
    """A .kdz file or one of its encoded streams is damaged, truncated, foreign or of a newer format version."""
