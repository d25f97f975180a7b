"""Decoding-time guides. Importing this package registers every guide type."""

from detoxlab.guides import expert, nado, preprompt, reward  # noqa: F401  (registers the types)
from detoxlab.guides.base import NO_GUIDE, Guide, build_guide, load_guide, register_guide


def processor(guide, model, pad_token_id: int | None = None, **sampling):
    """A ``transformers`` ``LogitsProcessor`` that applies ``guide`` (an artifact directory or a ``Guide``) inside
    ``model.generate``; see :mod:`detoxlab.guides.logits_processor` (imported here only when used)."""
    from detoxlab.guides.logits_processor import processor as build

    return build(guide, model, pad_token_id, **sampling)


__all__ = ["NO_GUIDE", "Guide", "build_guide", "load_guide", "processor", "register_guide"]
