"""The model card (``README.md``) of an exported model: what it is, how it was made, what the report measured.

Everything comes from the artifacts: the model's manifest (method, hyperparameters, inputs, the grid point a
selection chose), the root model's source, the inputs' own metadata, and the report's table rows of the
model's unguided system with their 95% intervals.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from detoxlab.artifacts import read_json, read_manifest


def method_of(name: str, root: str) -> str:
    """A readable method name from the DAG's naming scheme (``<root>.<method>[...]``)."""
    from detoxlab.acf.plan import BASELINES, CLASSIFIERS
    from detoxlab.unidetox.plan import METHODS

    suffix = name[len(root) + 1:] if name.startswith(root + ".") else ""
    if not suffix:
        return "base model (no detoxification)"
    if suffix.startswith("acf."):
        rest = suffix[4:]
        if rest in BASELINES or rest in CLASSIFIERS:
            return f"{({**BASELINES, **CLASSIFIERS})[rest]} (ACF paper baseline)"
        run, _, it = rest.rpartition(".it")
        return f"attribute-controlled fine-tuning (ACF), run '{run}', iteration {it}"
    head = suffix.split(".")[0]
    if head == "toxic":
        return "toxic model (fine-tuned on toxic text; the contrast for UniDetox, not a detoxified model)"
    return METHODS[head][0] if head in METHODS else suffix


def _effective(model_dir: Path) -> tuple[Path, dict]:
    """The directory whose manifest records the training (an alias stands for the grid point it chose)."""
    manifest = read_manifest(model_dir, "model")
    alias = (manifest.get("derived") or {}).get("alias_of")
    if alias:
        target = (model_dir / alias).resolve()
        return target, read_manifest(target, "model")
    return model_dir, manifest


def _root_source(model_dir: Path) -> dict:
    from detoxlab.models.registry import base_dir_of

    params = read_manifest(base_dir_of(model_dir), "model").get("params", {})
    return {k: v for k, v in params.items() if k in ("name", "source", "package", "file", "path", "revision")}


def _input_summary(path: str) -> str:
    """One line on an input artifact: its metadata's counts and provenance where it has any."""
    from detoxlab.evaluation import meta_path

    meta = meta_path(path)
    if not meta.is_file():
        return f"`{path}`"
    info = read_json(meta)
    keys = ("n_texts", "n", "samples", "method", "prompts")
    shown = {k: info[k] for k in keys if k in info}
    return f"`{path}` — " + json.dumps(shown, sort_keys=True) if shown else f"`{path}`"


def _report_rows(results: Path, system: str) -> list[dict]:
    table = results / "report" / "table.csv"
    if not table.is_file():
        return []
    with open(table, newline="", encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if row["system"] == system]


def _ci(row: dict, key: str, digits: int = 3) -> str:
    try:
        value, lo, hi = (float(row[k]) for k in (key, f"{key}_lo", f"{key}_hi"))
    except (KeyError, TypeError, ValueError):
        return "–"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _value(row: dict, key: str, digits: int = 3) -> str:
    try:
        return f"{float(row[key]):.{digits}f}"
    except (KeyError, TypeError, ValueError):
        return "–"


def _primary_scorer(results: Path, system: str) -> str | None:
    meta = results / "eval" / "test" / system / "scores.meta.json"
    return read_json(meta).get("primary") if meta.is_file() else None


def model_card(model_dir: Path, manifest: dict, results: Path, system: str, sampling: dict | None,
               export_name: str) -> str:
    model_dir = Path(model_dir)
    root = manifest.get("root") or model_dir.name
    trained_dir, trained = _effective(model_dir)
    source = _root_source(model_dir)
    base_model = source.get("path") or source.get("name") or root
    method = method_of(trained_dir.name, root)
    front = {"library_name": "transformers", "base_model": base_model, "tags": ["detoxification", "detoxlab"],
             "pipeline_tag": "text-generation"}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {model_dir.name}", "", f"**Method:** {method}.  ",
             f"**Base model:** `{root}` ({json.dumps(source, sort_keys=True)}).", "",
             "Exported by detoxlab as a standalone checkpoint: every change (fine-tuned tensors, a merged LoRA "
             "adapter, LM-Steer folded into the output layer) is in the weights; load it with "
             "`AutoModelForCausalLM` / `AutoTokenizer` alone.", ""]
    if trained_dir != model_dir:
        lines += [f"This is the grid point `{trained_dir.name}` chosen by the workflow's selection.", ""]
    selection = manifest.get("selection") or trained.get("selection")
    if selection:
        lines += [f"**Selection:** chose `{selection.get('chosen')}` — {selection.get('criterion', '')}", ""]
    lines += ["## Hyperparameters", "", "```yaml", yaml.safe_dump(trained.get("params", {}), sort_keys=True).strip(),
              "```", "", "## Training data and inputs", ""]
    inputs = trained.get("inputs") or {}
    lines += [f"- {k}: {_input_summary(v)}" for k, v in inputs.items()] or ["- none (the base model itself)"]
    training = trained.get("training") or {}
    if training:
        shown = {k: training[k] for k in ("steps", "n_texts", "n_sequences", "n_trainable", "seconds") if k in training}
        lines += ["", f"Training: {json.dumps(shown, sort_keys=True)}"]
    lines += ["", "## Evaluation (detoxlab report)", ""]
    rows = _report_rows(results, system)
    if rows:
        scorer = _primary_scorer(results, system)
        lines += [f"System `{system}`; toxicity under the evaluation's primary scorer `{scorer}`, 95% bootstrap "
                  "intervals over prompts.", "",
                  "| split | TP | EMT | PPL (judge) | dist-2 | MMLU answer text | held-out PPL |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['split']} | {_ci(r, 'tp')} | {_ci(r, 'emt')} | {_ci(r, 'ppl', 1)} ({r.get('judge')}) "
                         f"| {_value(r, 'dist2')} | {_ci(r, 'mmlu_answer')} | {_ci(r, 'heldout_ppl', 1)} |")
    else:
        lines.append(f"No report row for `{system}` in `{results / 'report' / 'table.csv'}`: metrics not available.")
    if sampling:
        shown = {k: v for k, v in sampling.items() if k != "dtype"}
        lines += ["", "The generation config holds the evaluation's sampling settings (every other filter off): "
                  f"`{json.dumps(shown, sort_keys=True)}`. The weights are float32; the evaluation computed in "
                  f"{sampling.get('dtype') or 'float32'}."]
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f'model = AutoModelForCausalLM.from_pretrained("{export_name}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{export_name}")', "```", ""]
    return "\n".join(lines)
