"""The config keys a job reads, as DVC ``params`` entries of the config files themselves.

A job's ``cfg`` param is the JSON of exactly the validated config keys its step reads. Its leaves are config
keys, except where an attribute's evaluation set swaps in the attribute's own values (rewards.plan.split_view);
those are mapped back to where they are read from. DVC can only track keys that appear in a file, so each key
is reduced to its longest prefix present in each config file; a key left at its schema default appears in no
file and is covered by the schema, which every stage depends on as code.
"""

from __future__ import annotations

import json


def leaves(tree: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the non-dict values (and empty dicts) of a nested dict."""
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += leaves(value, path + ".")
        else:
            out.append(path)
    return out


def read_keys(params_json: str, view_sources: dict[str, list[str]]) -> list[str]:
    """The config keys behind a step's params JSON, in first-seen order."""
    keys: dict[str, None] = {}
    for leaf in leaves(json.loads(params_json)):
        swapped = [src for view, src in view_sources.items() if leaf == view or leaf.startswith(view + ".")]
        for key in swapped[0] if swapped else [leaf]:
            keys.setdefault(key)
    return list(keys)


def present_prefix(raw: dict, key: str) -> str | None:
    """The longest prefix of dotted ``key`` that exists in the raw (unvalidated) YAML mapping ``raw``."""
    node, found = raw, []
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            break
        found.append(part)
        node = node[part]
    return ".".join(found) or None


def covering(node, path: str, selected: set[str]) -> list[str]:
    """The fewest keys under ``path`` that track exactly the ``selected`` keys of the subtree ``node``.

    A selected key absorbs its descendants, and a mapping whose every child is covered is listed as itself:
    fewer keys mean fewer lookups in every ``dvc status``.
    """
    if path in selected:
        return [path]
    if not isinstance(node, dict) or not node:
        return []
    parts, full = [], True
    for key, value in node.items():
        child = f"{path}.{key}" if path else str(key)
        sub = covering(value, child, selected)
        full &= sub == [child]
        parts += sub
    return [path] if full and path else parts


def file_params(keys: list[str], raw_files: dict[str, dict]) -> list[dict[str, list[str]]]:
    """DVC ``params`` entries: per config file, the fewest of its keys that cover the present prefixes of ``keys``."""
    entries = []
    for path, raw in raw_files.items():
        kept = covering(raw, "", {p for p in (present_prefix(raw, k) for k in keys) if p})
        if kept:
            entries.append({path: kept})
    return entries
