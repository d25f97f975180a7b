"""config/README.md, generated from the config schema: every section with its description, every key with its
type, default and description. ``detoxlab config-docs`` writes it; a test checks the file is current."""

from __future__ import annotations

import json
from pathlib import Path

HEADER = """# Configuration

Generated from `workflow/schemas/config.schema.yaml` by `detoxlab config-docs` (a test checks it is current):
edit the schema's descriptions, then regenerate. `config/config.yaml` is the offline CPU default,
`config/paper.yaml` the papers' settings, `config/smoke.yaml` the tiny models of the tests; `detoxlab
check-config --config FILE` prints any of them with every default filled in. Keys are dotted paths; `<name>`
stands for a name you choose (a model, a guide, an attribute, a run).
"""


def _resolve(node: dict, defs: dict) -> dict:
    """``node`` with its ``$ref`` and ``allOf`` parts merged in (properties united, own keys first)."""
    parts = [node]
    if "$ref" in node:
        parts.append(_resolve(defs[node["$ref"].rsplit("/", 1)[1]], defs))
    parts += [_resolve(p, defs) for p in node.get("allOf", [])]
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**value, **merged.get("properties", {})}
            else:
                merged.setdefault(key, value)
    return merged


def _branches(node: dict, defs: dict) -> list[dict]:
    """Object-valued alternatives (oneOf/anyOf/then) whose keys belong to the same path."""
    out = []
    for key in ("oneOf", "anyOf"):
        out += [_resolve(b, defs) for b in node.get(key, [])]
    out += [_resolve(x["then"], defs) for x in node.get("allOf", []) if "then" in x]
    if "then" in node:
        out.append(_resolve(node["then"], defs))
    return [b for b in out if b.get("properties")]


def _type(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    kinds = node.get("type")
    if kinds is None:
        alts = [_type(b) for b in node.get("oneOf", []) + node.get("anyOf", [])]
        return " \\| ".join(a for a in alts if a) or ""
    return " \\| ".join(kinds) if isinstance(kinds, list) else kinds


def _default(node: dict) -> str:
    if "default" not in node:
        return ""
    text = json.dumps(node["default"])
    return f"`{text}`" if len(text) <= 40 else "(see schema)"


def _text(node: dict) -> str:
    return " ".join(str(node.get("description", "")).split()).replace("|", "\\|")


def _rows(node: dict, path: str, defs: dict, rows: list[tuple[str, str, str, str]]) -> None:
    node = _resolve(node, defs)
    props = dict(node.get("properties", {}))
    for branch in _branches(node, defs):
        for key, value in branch["properties"].items():
            props.setdefault(key, value)
    for key, value in props.items():
        child = _resolve(value, defs)
        if not child:  # `{}`: a key a branch only re-admits
            continue
        sub = f"{path}.{key}"
        rows.append((sub, _type(child), _default(child), _text(child)))
        _rows(child, sub, defs, rows)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        child = _resolve(extra, defs)
        sub = f"{path}.<name>"
        rows.append((sub, _type(child), "", _text(child)))
        _rows(child, sub, defs, rows)


def render(schema: dict) -> str:
    defs = schema.get("$defs", {})
    out = [HEADER]
    for key, node in schema["properties"].items():
        node = _resolve(node, defs)
        out += [f"## `{key}`", "", _text(node) or "(no description)", ""]
        meta = [f"type: {_type(node)}"] + ([f"default: {_default(node)}"] if _default(node) else [])
        out += ["; ".join(meta), ""]
        rows: list[tuple[str, str, str, str]] = []
        _rows(node, key, defs, rows)
        if rows:
            out += ["| key | type | default | description |", "|---|---|---|---|"]
            out += [f"| `{p}` | {t} | {d} | {x} |" for p, t, d, x in rows]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def write(out: str | Path = "config/README.md", check: bool = False) -> int:
    from detoxlab.config import schema

    text = render(schema())
    out = Path(out)
    if check:
        current = out.read_text(encoding="utf-8") if out.is_file() else ""
        if current != text:
            print(f"{out} is out of date: run `detoxlab config-docs`")
            return 1
        return 0
    out.write_text(text, encoding="utf-8")
    return 0
