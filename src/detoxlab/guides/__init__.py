"""Decoding-time guides. Importing this package registers every guide type."""

from detoxlab.guides import expert, nado, preprompt, reward  # noqa: F401  (registers the types)
from detoxlab.guides.base import NO_GUIDE, Guide, build_guide, load_guide, register_guide

__all__ = ["NO_GUIDE", "Guide", "build_guide", "load_guide", "register_guide"]
