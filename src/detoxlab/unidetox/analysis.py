"""Analysis of UniDetox's distilled detoxifying text (paper Tables 3, 10 and 11).

UniDetox distils detoxifying text by contrasting a base model with a copy fine-tuned on toxic text and sampling from
the contrast. The paper checks what that text is: its toxicity is scored per sampling seed and compared with plain
samples of the base model (it should be less toxic), its vocabulary is compared with the toxic fine-tuning corpus by
Jaccard similarity of word sets (it should share fewer words with it than plain samples do), and its most
characteristic words are listed by TF-IDF, each corpus against the other two, to show what the text talks about.
Everything here is plain Python and numpy so that every number can be checked by hand.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

# Small fixed English stop-word list, excluded from the TF-IDF vocabulary (not from Jaccard or word counts).
STOPWORDS: frozenset[str] = frozenset((
    "the", "a", "an", "and", "or", "of", "to", "in", "is", "are", "was", "were", "it", "that", "this", "for", "on",
    "with", "as", "at", "by", "be", "i", "you", "he", "she", "we", "they", "me", "my", "your", "his", "her", "our",
    "their", "not", "no", "but", "so", "if", "from", "have", "has", "had", "do", "does", "did", "will", "would", "can",
    "could", "just", "about", "all", "what", "there", "than", "then", "its", "it's", "i'm", "don't",
))

_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """Lowercase word tokens (``[a-z']+``), apostrophes stripped at both ends, empty tokens dropped."""
    out = (w.strip("'") for w in _WORD.findall(text.lower()))
    return [w for w in out if w]


def _vocab(texts: Sequence[str]) -> set[str]:
    return {w for t in texts for w in words(t)}


def jaccard(a_texts: Sequence[str], b_texts: Sequence[str]) -> float:
    """Jaccard similarity |A∩B| / |A∪B| of the two corpora's word sets; 0.0 when both are empty."""
    a, b = _vocab(a_texts), _vocab(b_texts)
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def _content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS]


def top_tfidf_words(texts: Sequence[str], k: int = 20,
                    background: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """The ``k`` words of highest TF-IDF in ``texts`` taken as ONE document, each ``background`` text another one.

    Stop words are removed before counting. tf = count / number of (non-stop) words in the corpus document;
    idf = ln((1 + N) / (1 + df)) + 1 (smooth idf), N = 1 + len(background), df = documents containing the word.
    Ties are broken alphabetically.
    """
    counts = Counter(w for t in texts for w in _content_words(t))
    total = sum(counts.values())
    if not total or k <= 0:
        return []
    docs = [set(counts)] + [set(_content_words(t)) for t in (background or ())]
    n_docs = len(docs)
    vocab = sorted(counts)
    df = np.array([sum(w in d for d in docs) for w in vocab], dtype=float)
    tf = np.array([counts[w] for w in vocab], dtype=float) / total
    scores = tf * (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0)
    ranked = sorted(zip(vocab, scores.tolist(), strict=True), key=lambda ws: (-ws[1], ws[0]))
    return [(w, float(s)) for w, s in ranked[:k]]


def _valid(x) -> float | None:
    """The toxicity as a float, or None where scoring failed (None or NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def toxicity_by_seed(rows: Sequence[dict], threshold: float = 0.5) -> dict:
    """Mean toxicity per seed and mean ± sample std (ddof=1) of those per-seed means; failed scores are skipped.

    A seed whose scores all failed gets NaN and is left out of the mean and std. ``toxic_fraction_per_seed`` is the
    fraction of valid scores above ``threshold``; ``toxic_fraction`` is its mean over seeds.
    """
    by_seed: dict[int, list[float]] = {}
    n_failed = 0
    for row in rows:
        seed = int(row["seed"])
        scores = by_seed.setdefault(seed, [])
        tox = _valid(row.get("toxicity"))
        if tox is None:
            n_failed += 1
        else:
            scores.append(tox)
    per_seed = {s: float(np.mean(v)) if v else math.nan for s, v in sorted(by_seed.items())}
    frac = {s: float(np.mean([x > threshold for x in v])) if v else math.nan for s, v in sorted(by_seed.items())}

    def mean_std(values: dict[int, float]) -> tuple[float, float]:
        vals = [v for v in values.values() if not math.isnan(v)]
        if not vals:
            return math.nan, math.nan
        return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)

    mean, std = mean_std(per_seed)
    frac_mean, frac_std = mean_std(frac)
    return {"per_seed": per_seed, "mean": mean, "std": std,
            "toxic_fraction_per_seed": frac, "toxic_fraction": frac_mean, "toxic_fraction_std": frac_std,
            "threshold": threshold, "n_seeds": len(by_seed), "n_texts": len(rows), "n_failed": n_failed}


def analyse(distilled: Sequence[dict], base_samples: Sequence[dict], toxic_corpus: Sequence[str],
            k: int = 20) -> dict:
    """Toxicity per seed, Jaccard with the toxic corpus and top TF-IDF words of each corpus against the other two."""
    corpora = {"distilled": [r["text"] for r in distilled],
               "base_samples": [r["text"] for r in base_samples],
               "toxic": list(toxic_corpus)}
    top = {name: top_tfidf_words(texts, k, [t for other, ts in corpora.items() if other != name for t in ts])
           for name, texts in corpora.items()}
    return {"distilled": toxicity_by_seed(distilled),
            "base_samples": toxicity_by_seed(base_samples),
            "jaccard": {"distilled_vs_toxic": jaccard(corpora["distilled"], corpora["toxic"]),
                        "base_samples_vs_toxic": jaccard(corpora["base_samples"], corpora["toxic"])},
            "top_tfidf": top,
            "n_words": {name: sum(len(words(t)) for t in texts) for name, texts in corpora.items()}}


def _num(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.3f}"


def markdown(result: dict) -> str:
    """A "Distilled text analysis" section: toxicity/Jaccard table and top TF-IDF words per corpus."""
    lines = ["### Distilled text analysis", "",
             "| corpus | mean toxicity ± std over seeds | toxic fraction | Jaccard with toxic corpus |",
             "| --- | --- | --- | --- |"]
    for key, label in (("distilled", "distilled text"), ("base_samples", "base samples")):
        tox = result[key]
        mean = _num(tox["mean"])
        cell = mean if mean == "–" else f"{mean} ± {_num(tox['std'])}"
        lines.append(f"| {label} (n={tox['n_texts']}, seeds={tox['n_seeds']}) | {cell} | "
                     f"{_num(tox['toxic_fraction'])} | {_num(result['jaccard'][f'{key}_vs_toxic'])} |")
    lines += ["", "| rank | distilled | base samples | toxic corpus |", "| --- | --- | --- | --- |"]
    cols = [result["top_tfidf"][c] for c in ("distilled", "base_samples", "toxic")]
    for i in range(max(map(len, cols), default=0)):
        cells = [f"{c[i][0]} ({_num(c[i][1])})" if i < len(c) else "" for c in cols]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
