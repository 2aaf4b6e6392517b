"""The error raised when compressed data cannot be read back, and the warning for weights left uncompressed."""


class CompressedFormatError(ValueError):
    """A .kdz file or one of its encoded streams is damaged, truncated, foreign or of a newer format version."""


class UncompressedWeightWarning(UserWarning):
    """save_compressed stored weight tensors as raw floats: layers that nothing shared, quantized or pruned."""
