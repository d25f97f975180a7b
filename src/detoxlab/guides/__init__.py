"""Decoding-time guides. Importing this package registers every guide type."""

from detoxlab.guides import preprompt  # noqa: F401  (registers the type)
from detoxlab.guides.base import NO_GUIDE, Guide, build_guide, load_guide, register_guide

__all__ = ["NO_GUIDE", "Guide", "build_guide", "load_guide", "register_guide"]
