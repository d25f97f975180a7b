"""ToxBlock BiLSTM scorer: the real shipped model, run without TensorFlow, against the package's published outputs
and hand-written toxic and benign sentences."""

from __future__ import annotations

import importlib.util
import io
import math
import pickle
import sys

import numpy as np
import pytest

from detoxlab.scorers import SCORERS, ScorerError, build_scorer, score_texts
from detoxlab.scorers import tox_block_scorer as tb

pytest.importorskip("h5py")
if importlib.util.find_spec("tox_block") is None:
    pytest.skip("tox-block is not installed (requirements/assets.txt)", allow_module_level=True)

TOXIC = [
    "You are a pathetic idiot and everyone laughs at you.",
    "Shut up, you worthless piece of garbage.",
    "People like you are disgusting and should crawl back under a rock.",
    "Women are too dumb to be allowed to vote.",
    "Immigrants are all criminals and parasites who ruin this country.",
    "I will find you and beat you until you can't walk.",
    "I'm going to kill you and your whole family.",
    "What the fuck is wrong with you, asshole?",
    "Go to hell, you moron.",
    "Nobody wants you here, you ugly loser.",
]
BENIGN = [
    "The weather is lovely today, let's go for a walk.",
    "Thank you so much for helping me move last weekend.",
    "The meeting has been moved to Thursday at 3 pm.",
    "Could you please send me the report by Friday?",
    "I think your argument is interesting, but I disagree with the conclusion.",
    "He baked a chocolate cake for his daughter's birthday.",
    "The train to Berlin departs from platform four.",
    "You need to kill the process before restarting the server.",
    "I hate waking up early on Mondays.",
]

# tox-block 0.1.2's README: make_predictions(..., rescale=True) for three texts, in tb.LABELS order, and the per-label
# (min, max) its rescaling divides by (tox_block.config.RESCALE_PROBA).
README = {
    "Good morning my friend, I hope you're having a fantastic day!":
        [0.05347811430692673, 0.0006274021579883993, 0.004466842859983444, 0.009578478522598743,
         0.00757843442261219, 0.002106667961925268],
    "I will kill you, you fucking idiot!":
        [0.9998679757118225, 0.7870362997055054, 0.9885633587837219, 0.8483908176422119, 0.9883397221565247,
         0.171059250831604],
    "I do strongly disagree with the fascist views of this joke that calls itself a political party.":
        [0.026190076023340225, 7.185135473264381e-05, 0.0009493605466559529, 0.00012321282702032477,
         0.0029190618079155684, 0.0022098885383456945],
}
RESCALE = [(0.002116, 0.999858), (0.000011, 0.648682), (0.000347, 0.997533), (0.000040, 0.918887),
           (0.000373, 0.986303), (0.000074, 0.901117)]


@pytest.fixture(scope="module")
def scorer() -> tb.ToxBlockScorer:
    built = build_scorer({"type": "tox_block"})
    assert isinstance(built, tb.ToxBlockScorer)
    return built


def test_registered_with_its_options(scorer: tb.ToxBlockScorer) -> None:
    assert SCORERS["tox_block"] is tb.ToxBlockScorer and scorer.name == "tox_block" and scorer.label == "toxic"
    with pytest.raises(ScorerError, match=r"^scorer\.device: unknown option"):
        build_scorer({"type": "tox_block", "device": "cpu"})
    with pytest.raises(ScorerError, match=r"^scorer\.label: 'toxicity' is not a tox_block label"):
        build_scorer({"type": "tox_block", "label": "toxicity"})


def test_reproduces_the_packages_published_outputs(scorer: tb.ToxBlockScorer) -> None:
    raw = scorer._probabilities(list(README))
    low, high = np.array(RESCALE).T
    assert np.abs((raw - low) / (high - low)) == pytest.approx(np.array(list(README.values())), abs=1e-6)


def test_label_selects_its_head(scorer: tb.ToxBlockScorer) -> None:
    threat = build_scorer({"type": "tox_block", "label": "threat"})
    texts = list(README)
    assert threat.score_batch(texts) == pytest.approx(scorer._probabilities(texts)[:, 3].tolist())


def test_toxic_sentences_score_above_benign_ones(scorer: tb.ToxBlockScorer) -> None:
    toxic, benign = scorer.score_batch(TOXIC), scorer.score_batch(BENIGN)
    assert min(toxic) > max(benign)
    assert np.median(toxic) > 0.9 and np.median(benign) < 0.05


def test_outputs_are_probabilities_in_input_order(scorer: tb.ToxBlockScorer) -> None:
    texts = TOXIC + BENIGN
    scores = scorer.score_batch(texts)
    assert len(scores) == len(texts) and all(0.0 <= s <= 1.0 and math.isfinite(s) for s in scores)
    assert scorer.score_batch(texts[::-1]) == pytest.approx(scores[::-1], rel=1e-6)
    assert scores == pytest.approx([scorer.score_batch([t])[0] for t in texts], rel=1e-6)


def test_empty_and_unknown_inputs(scorer: tb.ToxBlockScorer) -> None:
    assert scorer.score_batch([]) == []
    # No known word: the model sees padding only, which it scores as clean.
    empty, unknown = scorer.score_batch(["", "qwxzv!!! ---"])
    assert empty == pytest.approx(unknown) and 0.0 <= empty < 0.5


def test_long_texts_keep_their_last_100_words(scorer: tb.ToxBlockScorer) -> None:
    words = ("the meeting is on thursday and you are an idiot " * 30).split()
    assert len(words) > 100
    long, tail = scorer.score_batch([" ".join(words), " ".join(words[-100:])])
    assert long == pytest.approx(tail, rel=1e-6)


def test_runs_through_score_texts(scorer: tb.ToxBlockScorer) -> None:
    result = score_texts(scorer, [TOXIC[0], BENIGN[0], TOXIC[0]], batch_size=2)
    assert result.n_failed == 0 and result.scores[0] == result.scores[2] > 0.5 > result.scores[1]


def test_rank_agreement_with_profanity_check(scorer: tb.ToxBlockScorer) -> None:
    """Both scorers should rank these sentences alike, without being the same scorer (measured: rho = 0.965)."""
    from scipy.stats import spearmanr

    profanity = build_scorer({"type": "profanity_check"})
    texts = TOXIC[:6] + BENIGN[:6]
    rho = spearmanr(scorer.score_batch(texts), profanity.score_batch(texts)).statistic
    print(f"Spearman rho(tox_block, profanity_check) on {len(texts)} sentences: {rho:.3f}")
    assert 0.5 < rho < 1.0


def test_tokenizer_unpickler_builds_only_plain_containers() -> None:
    with pytest.raises(pickle.UnpicklingError, match="os.system is not allowed"):
        tb._TokenizerUnpickler(io.BytesIO(b"cos\nsystem\n(S'true'\ntR.")).load()


def test_missing_or_other_package_version_names_the_config_key(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise tb.PackageNotFoundError(name)

    monkeypatch.setattr(tb, "version", not_installed)
    with pytest.raises(ScorerError, match=r"^scorer\.type: 'tox_block' needs the tox-block==0\.1\.2 package"):
        build_scorer({"type": "tox_block"})
    monkeypatch.setattr(tb, "version", lambda name: "0.2.0")
    with pytest.raises(ScorerError, match=r"^scorer\.type: 'tox_block' is checked against tox-block==0\.1\.2"):
        build_scorer({"type": "tox_block"})
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ScorerError, match=r"^scorer\.type: 'tox_block' needs the h5py package"):
        build_scorer({"type": "tox_block"})
