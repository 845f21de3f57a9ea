"""Wardgate: a security gateway for the Model Context Protocol."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
