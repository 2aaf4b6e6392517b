"""Chapter 07's exercises (checks to be written)."""
from __future__ import annotations

__all__: list[str] = []
