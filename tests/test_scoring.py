import pytest

from kotune.scoring import KiwiMorphemes, score


def test_identical_korean_scores_full_marks_unlike_rouge_default():
    from rouge_score import rouge_scorer

    text = "측은지심은 인의 싹이오."
    default = rouge_scorer.RougeScorer(["rouge1"]).score(text, text)["rouge1"].fmeasure
    assert default == 0.0  # the trap: the default tokenizer drops Hangul
    scores = score([text], [text])
    assert scores["rouge1_kiwi"] == scores["rouge2_kiwi"] == scores["rougeL_kiwi"] == 100.0
    assert scores["bleu_kiwi"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)


def test_unrelated_answers_score_low_and_partial_overlap_in_between():
    refs = ["백성이 가장 귀하고 임금은 가볍다."]
    none = score(["오늘 날씨가 맑습니다."], refs)
    some = score(["백성이 가장 귀하다."], refs)
    assert none["rouge1_kiwi"] < some["rouge1_kiwi"] < 100
    assert none["chrf"] < some["chrf"] < 100


def test_kiwi_splits_morphemes():
    assert KiwiMorphemes().tokenize("먹었다") == ["먹", "었", "다"]


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score(["a", "b"], ["a"])
