import pytest

from caption_agent.ranking import ConsensusRanker
from caption_agent.schemas import Candidate

pytestmark = pytest.mark.slow


def _c(text, score):
    return Candidate(text=text, drafter="t", score=score)


def test_consensus_demotes_the_odd_one_out(embedder):
    ranker = ConsensusRanker(embedder, drafter_weight=0.0)
    cands = [
        _c("A tabby cat on a rug.", 0.3),
        _c("A grey cat lying down.", 0.3),
        _c("A cat with stripes.", 0.3),
        _c("A red sports car on a racetrack.", 0.3),
    ]
    ranked, confidence = ranker.rank(cands)
    assert ranked[-1].text.startswith("A red sports car")
    assert 0.0 <= confidence <= 1.0 and ranked[0].rank_score == confidence


def test_drafter_score_blends_in(embedder):
    cands = [_c("An espresso.", 0.95), _c("A bowl of consomme.", 0.01)]
    ranked, conf = ConsensusRanker(embedder, drafter_weight=0.5).rank(cands)
    assert ranked[0].text == "An espresso." and conf > ranked[1].rank_score
    assert ConsensusRanker(embedder).rank([])[1] == 0.0
