"""Safety preprompt: a fixed instruction prepended to every prompt (UniDetox's short/long baselines)."""

from __future__ import annotations

from detoxlab.guides.base import Guide, register_guide


@register_guide("preprompt")
class PrepromptGuide(Guide):
    def wrap_prompt(self, text: str) -> str:
        return self.spec["text"] + self.spec.get("separator", "\n\n") + text
