"""Windward: a Ray-based GPU cluster scheduler for a wind-powered AI factory (the control plane)."""

from __future__ import annotations

__version__ = "0.1.0"
