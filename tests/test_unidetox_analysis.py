"""UniDetox distilled-text analysis: every expected number is worked out by hand in the test."""

from __future__ import annotations

import math

import pytest

from detoxlab.unidetox.analysis import (
    STOPWORDS,
    analyse,
    jaccard,
    markdown,
    top_tfidf_words,
    toxicity_by_seed,
    words,
)


def test_words_lowercases_and_strips_apostrophes():
    assert words("Don't SHOUT, 'quoted' it's 42 ok''") == ["don't", "shout", "quoted", "it's", "ok"]
    assert words("' '' 123 !!") == []


def test_jaccard_by_hand():
    # A = {a, b, c}, B = {b, c, d}: |A∩B| = 2, |A∪B| = 4.
    assert jaccard(["a b c"], ["b c d"]) == pytest.approx(2 / 4)
    # Word sets pool all texts and ignore case and repeats: A = {x, y}, B = {y}: 1/2.
    assert jaccard(["X x", "y"], ["Y y y"]) == pytest.approx(1 / 2)
    assert jaccard([], []) == 0.0
    assert jaccard(["a"], []) == 0.0


def test_tfidf_by_hand_with_background():
    # Corpus document: "cat dog" + "the dog" -> content words cat, dog, dog ("the" is a stop word); total 3.
    # Background documents: {dog, fish}, {fish, bird}. N = 3 documents.
    # cat:  tf = 1/3, df = 1, idf = ln(4/2) + 1 = 1.693147 -> 0.564382
    # dog:  tf = 2/3, df = 2, idf = ln(4/3) + 1 = 1.287682 -> 0.858454
    # fish/bird are not in the corpus document, so they are not scored.
    got = top_tfidf_words(["cat dog", "the dog"], k=10, background=["dog fish", "fish bird"])
    assert [w for w, _ in got] == ["dog", "cat"]
    assert got[0][1] == pytest.approx(2 / 3 * (math.log(4 / 3) + 1))
    assert got[0][1] == pytest.approx(0.858454, abs=1e-6)
    assert got[1][1] == pytest.approx(1 / 3 * (math.log(4 / 2) + 1))
    assert got[1][1] == pytest.approx(0.564382, abs=1e-6)
    assert all(isinstance(s, float) for _, s in got)


def test_tfidf_rare_word_beats_common_one():
    # Corpus: apple, pear (total 2, tf = 1/2 each). Background: {pear}. N = 2.
    # apple: df = 1, idf = ln(3/2) + 1 = 1.405465 -> 0.702733
    # pear:  df = 2, idf = ln(3/3) + 1 = 1        -> 0.5
    got = top_tfidf_words(["pear apple"], background=["pear"])
    assert got == [("apple", pytest.approx(0.5 * (math.log(1.5) + 1))), ("pear", pytest.approx(0.5))]


def test_tfidf_ties_alphabetical_and_k():
    # One document, N = 1, df = 1: idf = ln(2/2) + 1 = 1; tf = 1/3 each -> three ties at 1/3.
    got = top_tfidf_words(["zeta alpha mid"], k=2)
    assert got == [("alpha", pytest.approx(1 / 3)), ("mid", pytest.approx(1 / 3))]
    assert top_tfidf_words([], k=5) == []
    assert top_tfidf_words(["the and of"], k=5) == []  # only stop words


def test_stopwords_excluded():
    assert {"the", "a", "it's", "i'm", "don't", "and", "you"} <= STOPWORDS
    assert 55 <= len(STOPWORDS) <= 70
    got = top_tfidf_words(["The cat and the dog, it's I'm don't you"], k=20)
    assert {w for w, _ in got} == {"cat", "dog"}
    # tf = 1/2 each (stop words are not counted in the total), idf = 1.
    assert [s for _, s in got] == [pytest.approx(0.5), pytest.approx(0.5)]


def test_toxicity_by_seed_by_hand():
    rows = [{"seed": 0, "toxicity": 0.2}, {"seed": 0, "toxicity": 0.6}, {"seed": 0, "toxicity": float("nan")},
            {"seed": 1, "toxicity": 0.1}, {"seed": 1, "toxicity": None}, {"seed": 1, "toxicity": 0.3},
            {"seed": 2, "toxicity": 0.9}]
    r = toxicity_by_seed(rows)
    # Per seed (NaN/None ignored): seed 0: (0.2 + 0.6)/2 = 0.4; seed 1: (0.1 + 0.3)/2 = 0.2; seed 2: 0.9.
    assert r["per_seed"] == {0: pytest.approx(0.4), 1: pytest.approx(0.2), 2: pytest.approx(0.9)}
    # Mean of per-seed means: (0.4 + 0.2 + 0.9)/3 = 0.5.
    assert r["mean"] == pytest.approx(0.5)
    # Sample std: deviations -0.1, -0.3, 0.4 -> squares 0.01 + 0.09 + 0.16 = 0.26; /(3-1) = 0.13; sqrt = 0.360555.
    assert r["std"] == pytest.approx(math.sqrt(0.13))
    # Fraction > 0.5: seed 0: 1/2; seed 1: 0/2; seed 2: 1/1; mean (0.5 + 0 + 1)/3 = 0.5.
    assert r["toxic_fraction_per_seed"] == {0: 0.5, 1: 0.0, 2: 1.0}
    assert r["toxic_fraction"] == pytest.approx(0.5)
    assert (r["n_seeds"], r["n_texts"], r["n_failed"]) == (3, 7, 2)


def test_toxicity_by_seed_single_seed_and_threshold():
    r = toxicity_by_seed([{"seed": 7, "toxicity": 0.3}, {"seed": 7, "toxicity": 0.5}], threshold=0.25)
    assert r["mean"] == pytest.approx(0.4) and r["std"] == 0.0
    assert r["toxic_fraction_per_seed"] == {7: 1.0}
    # 0.5 is not > 0.5 at the default threshold.
    assert toxicity_by_seed([{"seed": 0, "toxicity": 0.5}])["toxic_fraction"] == 0.0


def test_toxicity_by_seed_all_failed():
    r = toxicity_by_seed([{"seed": 0, "toxicity": None}, {"seed": 1, "toxicity": float("nan")}])
    assert math.isnan(r["per_seed"][0]) and math.isnan(r["mean"]) and math.isnan(r["std"])
    assert (r["n_seeds"], r["n_texts"], r["n_failed"]) == (2, 2, 2)


def _toy() -> dict:
    distilled = [{"text": "kind calm words", "seed": 0, "toxicity": 0.1},
                 {"text": "calm garden", "seed": 1, "toxicity": 0.3}]
    base = [{"text": "hate calm", "seed": 0, "toxicity": 0.7},
            {"text": "stupid garden", "seed": 1, "toxicity": float("nan")}]
    toxic = ["hate stupid idiot", "stupid calm"]
    return analyse(distilled, base, toxic, k=3)


def test_analyse_by_hand():
    r = _toy()
    # Word sets: distilled {kind, calm, words, garden}; base {hate, calm, stupid, garden};
    # toxic {hate, stupid, idiot, calm}.
    # distilled vs toxic: ∩ {calm} = 1, ∪ = 7 -> 1/7.  base vs toxic: ∩ {hate, calm, stupid} = 3, ∪ = 5 -> 3/5.
    assert r["jaccard"]["distilled_vs_toxic"] == pytest.approx(1 / 7)
    assert r["jaccard"]["base_samples_vs_toxic"] == pytest.approx(3 / 5)
    assert r["n_words"] == {"distilled": 5, "base_samples": 4, "toxic": 5}
    # Distilled: means 0.1 and 0.3 -> 0.2 ± sqrt(((-0.1)^2 + 0.1^2)/1) = 0.141421. Base: seed 1 all failed -> 0.7.
    assert r["distilled"]["mean"] == pytest.approx(0.2)
    assert r["distilled"]["std"] == pytest.approx(math.sqrt(0.02))
    assert r["base_samples"]["mean"] == pytest.approx(0.7) and r["base_samples"]["std"] == 0.0
    # Distilled TF-IDF: the distilled corpus is one document, the 2 base and 2 toxic texts are 4 more.
    # Documents: D = {kind, calm, words, garden}, {hate, calm}, {stupid, garden}, {hate, stupid, idiot}, {stupid, calm}.
    # N = 5. tf: calm 2/5, garden 1/5, kind 1/5, words 1/5.
    # calm: df 3, idf = ln(6/4) + 1 = 1.405465 -> 0.562186; kind/words: df 1, idf = ln(6/2) + 1 = 2.098612 -> 0.419722;
    # garden: df 2, idf = ln(6/3) + 1 = 1.693147 -> 0.338629. Top 3: calm, kind, words (tie -> alphabetical).
    top = r["top_tfidf"]["distilled"]
    assert [w for w, _ in top] == ["calm", "kind", "words"]
    assert top[0][1] == pytest.approx(0.4 * (math.log(6 / 4) + 1))
    assert top[1][1] == pytest.approx(0.2 * (math.log(6 / 2) + 1))
    # Toxic TF-IDF: doc {hate, stupid, idiot, calm} (stupid x2), background: 2 distilled + 2 base texts, N = 5.
    # tf: stupid 2/5, hate/idiot/calm 1/5. df: stupid 2 (+ "stupid garden"), hate 2, idiot 1, calm 4.
    # stupid: 0.4 * (ln(6/3) + 1) = 0.677259; idiot: 0.2 * (ln(6/2) + 1) = 0.419722; hate: 0.2 * 1.693147 = 0.338629.
    tox = r["top_tfidf"]["toxic"]
    assert [w for w, _ in tox] == ["stupid", "idiot", "hate"]
    assert tox[0][1] == pytest.approx(0.4 * (math.log(2) + 1))


def test_markdown_contains_numbers():
    md = markdown(_toy())
    assert md.startswith("### Distilled text analysis")
    assert "0.200 ± 0.141" in md  # distilled mean ± std
    assert "0.700 ± 0.000" in md  # base samples
    assert "0.143" in md and "0.600" in md  # Jaccard 1/7 and 3/5
    assert "calm (0.562)" in md and "stupid (0.677)" in md
    assert "| rank | distilled | base samples | toxic corpus |" in md
    assert md.count("\n| 1 |") == 1 and "| 3 |" in md


def test_markdown_nan_shown_as_dash():
    r = analyse([{"text": "x", "seed": 0, "toxicity": None}], [], ["y"], k=2)
    md = markdown(r)
    line = next(ln for ln in md.splitlines() if ln.startswith("| distilled text"))
    assert "–" in line and "nan" not in md.lower()
