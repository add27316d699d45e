"""Korean-aware answer scores: ROUGE on Kiwi morphemes, BLEU on the same, chrF on characters.

rouge_score's default tokenizer keeps only [a-z0-9], so two identical Korean strings would score
0: Kiwi morphemes are the usual choice in Korean papers. Keys name the tokenisation. All scores
are on a 0–100 scale.
"""

from __future__ import annotations

from typing import Any


class KiwiMorphemes:
    """A rouge_score tokenizer: Kiwi morpheme surface forms (`먹었다` → 먹, 었, 다)."""

    def __init__(self) -> None:
        from kiwipiepy import Kiwi

        self.kiwi = Kiwi()

    def tokenize(self, text: str) -> list[str]:
        return [token.form for token in self.kiwi.tokenize(text)]

    def tagged(self, text: str) -> list[tuple[str, str]]:
        """(surface form, Sejong tag) of each morpheme: `추천해 줘` → (추천, NNG), (하, XSV), …"""
        return [(token.form, token.tag) for token in self.kiwi.tokenize(text)]


def score(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus scores of `predictions` against `references` (same order)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("nothing to score")
    morphemes = KiwiMorphemes()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=morphemes)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        for key in totals:
            totals[key] += scores[key].fmeasure
    n = len(predictions)
    pred_morph = [" ".join(morphemes.tokenize(p)) for p in predictions]
    ref_morph = [" ".join(morphemes.tokenize(r)) for r in references]
    bleu = sacrebleu.corpus_bleu(pred_morph, [ref_morph], tokenize="none")
    chrf = sacrebleu.corpus_chrf(predictions, [references])
    return {
        "rouge1_kiwi": round(100 * totals["rouge1"] / n, 3),
        "rouge2_kiwi": round(100 * totals["rouge2"] / n, 3),
        "rougeL_kiwi": round(100 * totals["rougeL"] / n, 3),
        "bleu_kiwi": round(bleu.score, 3),
        "chrf": round(chrf.score, 3),
        "scored": n,
    }
