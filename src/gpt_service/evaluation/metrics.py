"""Pure text metrics (exact match, BLEU, chrF, ROUGE) that are correct for Chinese and English.

Everything here is side-effect free: no file or network I/O, no torch. BLEU and chrF come from
``sacrebleu``; ROUGE comes from ``rouge-score`` with a CJK-aware tokenizer, because rouge-score's
default tokenizer silently drops every non-ASCII character (so Chinese would always score 0).

Score scales: ``exact_match`` and ``rouge`` are in 0..1, ``bleu`` and ``chrf`` in 0..100
(sacrebleu's convention).
"""

from __future__ import annotations

import logging
import re
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Any, Literal

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

logger = logging.getLogger(__name__)

TEXT_METRICS: tuple[str, ...] = ("exact_match", "bleu", "rouge", "chrf")
"""Metrics computed by :func:`compute_metrics` from predictions and references alone."""

SUPPORTED_METRICS: tuple[str, ...] = (*TEXT_METRICS, "perplexity")
"""All metric names the service knows; ``perplexity`` needs the model (see ``perplexity.py``)."""

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

BleuTokenizer = Literal["zh", "13a"]

# Han (CJK unified ideographs + extensions + compatibility), iteration/closing marks 々〆〇,
# Hiragana, Katakana (+ phonetic extensions, half-width forms) and Hangul (jamo + syllables).
# CJK punctuation (U+3000-U+303F except 々〆〇, full-width forms) is deliberately not included.
_CJK_RANGES = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3005-\u3007"  # 々 〆 〇
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\u3130-\u318f"  # Hangul Compatibility Jamo
    "\u31f0-\u31ff"  # Katakana Phonetic Extensions
    "\u3400-\u4dbf"  # CJK Unified Ideographs Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\ua960-\ua97f"  # Hangul Jamo Extended-A
    "\uac00-\ud7ff"  # Hangul Syllables + Jamo Extended-B
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\uff66-\uff9f"  # Half-width Katakana
    "\U00020000-\U0003ffff"  # CJK Unified Ideographs Extensions B..H (planes 2 and 3)
)
_CJK_CHAR_RE = re.compile(f"[{_CJK_RANGES}]")
_WORD_RE = re.compile(r"[^\W_]+")  # runs of Unicode letters/digits
_ASCII_PUNCTUATION = frozenset(string.punctuation)


@dataclass
class MetricResult:
    """Result of one metric over a corpus.

    ``score`` is the corpus-level value, ``per_sample`` has one value per prediction (same scale),
    ``details`` carries extra information such as the sacrebleu signature or ROUGE sub-scores.
    """

    name: str
    score: float
    per_sample: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


# --------------------------------------------------------------------------- normalisation


def _is_punctuation(char: str) -> bool:
    """Unicode punctuation (categories P*, e.g. ，。！？；：“”（）) or any ASCII punctuation."""
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize_text(s: str, *, ignore_case: bool = False, ignore_punctuation: bool = False) -> str:
    """Normalise ``s`` for comparison.

    Always: strip leading/trailing whitespace and collapse every run of Unicode whitespace
    (spaces, tabs, newlines, the ideographic space U+3000, ...) into a single ASCII space.
    ``ignore_case`` lower-cases the text. ``ignore_punctuation`` deletes (does not replace with a
    space) ASCII punctuation/symbols and all Unicode punctuation, including CJK punctuation such
    as ，。！？；：“”（）《》、 ; whitespace is collapsed again afterwards.
    """
    if ignore_case:
        s = s.lower()
    if ignore_punctuation:
        s = "".join(char for char in s if not _is_punctuation(char))
    return " ".join(s.split())


# --------------------------------------------------------------------------- CJK helpers


def has_cjk(text: str) -> bool:
    """True if ``text`` contains at least one Han, Kana or Hangul character."""
    return _CJK_CHAR_RE.search(text) is not None


def choose_bleu_tokenizer(references: Sequence[str]) -> BleuTokenizer:
    """Pick sacrebleu's tokenizer: ``"zh"`` if any reference contains CJK, else ``"13a"``."""
    return "zh" if any(has_cjk(ref) for ref in references) else "13a"


class CJKAwareTokenizer:
    """Tokenizer for ``rouge_score`` that keeps non-ASCII text.

    Text is NFKC-normalised (full-width letters/digits become ASCII) and lower-cased; every CJK
    character (Han, Kana, Hangul) becomes its own token; other text is split into runs of
    letters/digits (words and numbers). Punctuation, including CJK punctuation, is dropped.
    """

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (see class docstring)."""
        text = unicodedata.normalize("NFKC", text).lower()
        spaced = _CJK_CHAR_RE.sub(r" \g<0> ", text)
        return _WORD_RE.findall(spaced)


# --------------------------------------------------------------------------- validation


def _validate(predictions: Sequence[str], references: Sequence[str]) -> None:
    """Raise ``ValueError`` for empty data, length mismatch or a bare string instead of a list."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise ValueError("predictions and references must be sequences of strings, not a str")
    if not predictions or not references:
        raise ValueError("predictions and references must not be empty")
    if len(predictions) != len(references):
        raise ValueError(
            f"length mismatch: {len(predictions)} predictions vs {len(references)} references"
        )


# --------------------------------------------------------------------------- metrics


def exact_match(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
) -> MetricResult:
    """Fraction (0..1) of predictions equal to their reference after :func:`normalize_text`."""
    _validate(predictions, references)
    options = {"ignore_case": ignore_case, "ignore_punctuation": ignore_punctuation}
    per_sample = [
        float(normalize_text(pred, **options) == normalize_text(ref, **options))
        for pred, ref in zip(predictions, references, strict=True)
    ]
    return MetricResult("exact_match", fmean(per_sample), per_sample, dict(options))


def bleu(
    predictions: Sequence[str],
    references: Sequence[str],
    tokenize: str | None = None,
) -> MetricResult:
    """Corpus BLEU (0..100) via sacrebleu, one reference per prediction.

    ``tokenize`` defaults to :func:`choose_bleu_tokenizer` (``zh`` for CJK references, else
    ``13a``). ``per_sample`` is sentence BLEU with the same tokenizer and effective order.
    """
    _validate(predictions, references)
    tokenizer = tokenize or choose_bleu_tokenizer(references)
    corpus_metric = BLEU(tokenize=tokenizer)
    corpus = corpus_metric.corpus_score(list(predictions), [list(references)])
    sentence_metric = BLEU(tokenize=tokenizer, effective_order=True)
    per_sample = [
        sentence_metric.sentence_score(pred, [ref]).score
        for pred, ref in zip(predictions, references, strict=True)
    ]
    details = {"signature": str(corpus_metric.get_signature()), "tokenizer": tokenizer}
    logger.debug("BLEU %.2f (%s)", corpus.score, details["signature"])
    return MetricResult("bleu", float(corpus.score), per_sample, details)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> MetricResult:
    """Corpus chrF (0..100) via sacrebleu's ``CHRF`` (character n-grams, works for CJK)."""
    _validate(predictions, references)
    metric = CHRF()
    corpus = metric.corpus_score(list(predictions), [list(references)])
    per_sample = [
        metric.sentence_score(pred, [ref]).score
        for pred, ref in zip(predictions, references, strict=True)
    ]
    details = {"signature": str(metric.get_signature())}
    return MetricResult("chrf", float(corpus.score), per_sample, details)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> MetricResult:
    """ROUGE-1/2/L F1 (0..1) via rouge-score with :class:`CJKAwareTokenizer`.

    ``score`` and ``per_sample`` are ROUGE-L F1; ``details`` holds the corpus mean F1 of
    rouge1/rouge2/rougeL and ``per_sample_<type>`` lists for each type.
    """
    _validate(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=CJKAwareTokenizer())
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references, strict=True)]
    per_type = {kind: [float(s[kind].fmeasure) for s in scores] for kind in ROUGE_TYPES}
    details: dict[str, Any] = {kind: fmean(values) for kind, values in per_type.items()}
    details.update({f"per_sample_{kind}": values for kind, values in per_type.items()})
    details["tokenizer"] = "cjk_aware"
    return MetricResult("rouge", details["rougeL"], per_type["rougeL"], details)


_DISPATCH: dict[str, Callable[..., MetricResult]] = {
    "exact_match": exact_match,
    "bleu": bleu,
    "rouge": rouge,
    "chrf": chrf,
}


def compute_metrics(
    names: Sequence[str],
    predictions: Sequence[str],
    references: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, MetricResult]:
    """Compute the text metrics ``names`` (duplicates ignored, order kept).

    ``options`` maps a metric name to keyword arguments for that metric, e.g.
    ``{"exact_match": {"ignore_case": True}, "bleu": {"tokenize": "zh"}}``; options for metrics
    not in ``names`` (including ``"perplexity"``) are ignored.
    Raises ``ValueError`` for unknown names, for ``"perplexity"`` (needs the model, use
    :mod:`gpt_service.evaluation.perplexity`), for empty data and for length mismatch.
    """
    _check_names(names, options or {})
    _validate(predictions, references)
    options = options or {}
    return {
        name: _DISPATCH[name](predictions, references, **options.get(name, {}))
        for name in dict.fromkeys(names)
    }


def _check_names(names: Sequence[str], options: Mapping[str, Any]) -> None:
    """Validate metric names (and option keys) before any work is done."""
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of metric names from {TEXT_METRICS}")
    for name in names:
        if name == "perplexity":
            raise ValueError("perplexity needs the model: use gpt_service.evaluation.perplexity")
        if name not in _DISPATCH:
            raise ValueError(_unknown_message(name))
    for key in options:
        if key not in SUPPORTED_METRICS:
            raise ValueError(_unknown_message(key))


def _unknown_message(name: str) -> str:
    return (
        f"unknown metric {name!r}; known text metrics: {', '.join(TEXT_METRICS)} "
        f"(all supported: {', '.join(SUPPORTED_METRICS)})"
    )
