"""Unit tests for gpt_service.evaluation.metrics (Chinese and English)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from gpt_service.evaluation import metrics
from gpt_service.evaluation.metrics import (
    SUPPORTED_METRICS,
    CJKAwareTokenizer,
    MetricResult,
    bleu,
    choose_bleu_tokenizer,
    chrf,
    compute_metrics,
    exact_match,
    has_cjk,
    normalize_text,
    rouge,
)

ZH_SENTENCE = "今天天气很好，我们一起去公园散步吧。"
ZH_DISJOINT = "床前明月光疑是地上霜"

EN_PREDS = [
    "The cat is sitting on the mat.",
    "A quick brown fox jumps over the lazy dog!",
    "It is raining heavily in Paris today.",
    "Machine translation quality is hard to measure.",
]
EN_REFS = [
    "The cat sat on the mat.",
    "The quick brown fox jumped over the lazy dog.",
    "It rains heavily in Paris today.",
    "Measuring machine translation quality is hard.",
]
ZH_PREDS = [
    "今天天气很好，我们去公园散步。",
    "机器翻译的质量很难衡量。",
    "他昨天买了一本新书。",
    "北京是中国的首都。",
]
ZH_REFS = [
    "今天天气不错，我们一起去公园散步吧。",
    "衡量机器翻译的质量是很难的。",
    "他昨天买了一本书。",
    "中国的首都是北京。",
]


# ------------------------------------------------------------------ identical / disjoint Chinese


def test_identical_chinese_scores_are_perfect() -> None:
    preds, refs = [ZH_SENTENCE], [ZH_SENTENCE]
    assert exact_match(preds, refs).score == 1.0
    assert bleu(preds, refs).score == pytest.approx(100.0)
    assert chrf(preds, refs).score == pytest.approx(100.0)
    result = rouge(preds, refs)
    for kind in ("rouge1", "rouge2", "rougeL"):
        assert result.details[kind] == pytest.approx(1.0)
        assert result.details[f"per_sample_{kind}"] == [pytest.approx(1.0)]
    assert result.score == pytest.approx(1.0)


def test_disjoint_chinese_scores_are_zero() -> None:
    preds, refs = [ZH_SENTENCE], [ZH_DISJOINT]
    assert exact_match(preds, refs).score == 0.0
    assert bleu(preds, refs).score == 0.0
    assert chrf(preds, refs).score == 0.0
    result = rouge(preds, refs)
    assert [result.details[k] for k in ("rouge1", "rouge2", "rougeL")] == [0.0, 0.0, 0.0]
    assert result.per_sample == [0.0]


def test_rouge_default_tokenizer_fails_on_chinese_but_ours_works() -> None:
    default = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    default_scores = default.score(ZH_SENTENCE, ZH_SENTENCE)
    assert all(score.fmeasure == 0.0 for score in default_scores.values())
    ours = rouge([ZH_SENTENCE], [ZH_SENTENCE])
    assert ours.details["rouge1"] == pytest.approx(1.0)
    assert ours.details["rouge2"] == pytest.approx(1.0)


def test_rouge_partial_chinese_overlap_matches_character_counts() -> None:
    # pred 4 chars, ref 6 chars, 4 shared unigrams -> P=1, R=2/3, F1=0.8
    result = rouge(["天气很好"], ["今天天气很好"])
    assert result.details["rouge1"] == pytest.approx(0.8)
    assert 0.0 < result.details["rouge2"] < 1.0


def test_cjk_tokenizer_splits_cjk_and_lowercases_words() -> None:
    tokens = CJKAwareTokenizer().tokenize("Hello, 世界！ＧＰＴ-4 です 한국 café 2024年")
    assert tokens == ["hello", "世", "界", "gpt", "4", "で", "す", "한", "국", "café", "2024", "年"]


def test_rouge_english_matches_reference_library() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    expected = [
        scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(EN_PREDS, EN_REFS, strict=True)
    ]
    result = rouge(EN_PREDS, EN_REFS)
    assert result.per_sample == pytest.approx(expected)
    assert result.score == pytest.approx(sum(expected) / len(expected))


# ------------------------------------------------------------------ BLEU / chrF vs sacrebleu


@pytest.mark.parametrize(
    ("preds", "refs", "tokenizer"), [(EN_PREDS, EN_REFS, "13a"), (ZH_PREDS, ZH_REFS, "zh")]
)
def test_bleu_equals_sacrebleu(preds: list[str], refs: list[str], tokenizer: str) -> None:
    assert choose_bleu_tokenizer(refs) == tokenizer
    expected = sacrebleu.corpus_bleu(preds, [refs], tokenize=tokenizer).score
    result = bleu(preds, refs)
    assert 0.0 < result.score < 100.0
    assert result.score == pytest.approx(expected, rel=1e-9)
    assert result.details["tokenizer"] == tokenizer
    assert f"tok:{tokenizer}" in result.details["signature"]
    sentence = [
        sacrebleu.sentence_bleu(p, [r], tokenize=tokenizer, use_effective_order=True).score
        for p, r in zip(preds, refs, strict=True)
    ]
    assert result.per_sample == pytest.approx(sentence)


def test_sentence_bleu_uses_effective_order() -> None:
    # fewer than 4 tokens: only effective order gives a perfect sentence score
    result = bleu(["the cat", "你好"], ["the cat", "你好"])
    assert result.per_sample == [pytest.approx(100.0), pytest.approx(100.0)]


def test_bleu_zh_differs_from_13a_on_chinese() -> None:
    auto = bleu(ZH_PREDS, ZH_REFS)
    forced = bleu(ZH_PREDS, ZH_REFS, tokenize="13a")
    assert "tok:13a" in forced.details["signature"]
    assert auto.score != pytest.approx(forced.score)


def test_chrf_equals_sacrebleu() -> None:
    expected = sacrebleu.corpus_chrf(ZH_PREDS, [ZH_REFS]).score
    result = chrf(ZH_PREDS, ZH_REFS)
    assert result.score == pytest.approx(expected)
    assert len(result.per_sample) == len(ZH_PREDS)
    assert "nc:6" in result.details["signature"]


def test_has_cjk() -> None:
    assert has_cjk("hello 世界")
    assert has_cjk("カタカナ")
    assert has_cjk("한국어")
    assert not has_cjk("hello, world")
    assert not has_cjk("，。！？")  # CJK punctuation alone is not CJK text
    assert choose_bleu_tokenizer(["plain english", "还有中文"]) == "zh"


# ------------------------------------------------------------------ normalisation / exact match


def test_normalize_whitespace_always_collapsed() -> None:
    assert normalize_text("  a \t b\n\nc\u3000d  ") == "a b c d"


def test_normalize_case_and_punctuation() -> None:
    assert normalize_text("Hello, World!") == "Hello, World!"
    assert normalize_text("Hello, World!", ignore_case=True) == "hello, world!"
    assert normalize_text("Hello, World!", ignore_punctuation=True) == "Hello World"
    text = "“你好”，世界！（测试）；是吗？：。"
    assert normalize_text(text, ignore_punctuation=True) == "你好世界测试是吗"


def test_exact_match_options() -> None:
    preds = ["你好，世界！", "Hello  World", "hello world."]
    refs = ["你好世界", "hello world", "Hello World"]
    assert exact_match(preds, refs).per_sample == [0.0, 0.0, 0.0]
    assert exact_match(preds, refs, ignore_case=True).per_sample == [0.0, 1.0, 0.0]
    both = exact_match(preds, refs, ignore_case=True, ignore_punctuation=True)
    assert both.per_sample == [1.0, 1.0, 1.0]
    assert exact_match(preds, refs, ignore_punctuation=True).score == pytest.approx(1 / 3)


# ------------------------------------------------------------------ dispatch and errors


def test_compute_metrics_dispatch_and_options() -> None:
    results = compute_metrics(
        ["exact_match", "bleu", "rouge", "chrf", "bleu"],
        ["你好，世界"],
        ["你好世界"],
        {"exact_match": {"ignore_punctuation": True}, "bleu": {"tokenize": "13a"}},
    )
    assert list(results) == ["exact_match", "bleu", "rouge", "chrf"]
    assert all(isinstance(r, MetricResult) for r in results.values())
    assert results["exact_match"].score == 1.0
    assert "tok:13a" in results["bleu"].details["signature"]
    assert results["rouge"].score == pytest.approx(1.0)
    assert results["chrf"].to_dict()["name"] == "chrf"


def test_supported_metrics_constant() -> None:
    assert set(SUPPORTED_METRICS) == {"exact_match", "bleu", "rouge", "chrf", "perplexity"}


@pytest.mark.parametrize("names", [["bleu", "meteor"], ["perplexity"], [], "bleu"])
def test_compute_metrics_rejects_bad_names(names: list[str]) -> None:
    with pytest.raises(ValueError):
        compute_metrics(names, ["a"], ["a"])


def test_unknown_metric_message_names_known_metrics() -> None:
    with pytest.raises(ValueError, match="exact_match.*bleu.*rouge.*chrf"):
        compute_metrics(["meteor"], ["a"], ["a"])
    with pytest.raises(ValueError, match="meteor"):
        compute_metrics(["bleu"], ["a"], ["a"], {"meteor": {}})


@pytest.mark.parametrize(
    ("preds", "refs"), [([], []), (["a"], []), ([], ["a"]), (["a", "b"], ["a"]), ("ab", "ab")]
)
@pytest.mark.parametrize("func", [exact_match, bleu, chrf, rouge])
def test_bad_data_raises(func: object, preds: list[str], refs: list[str]) -> None:
    with pytest.raises(ValueError):
        func(preds, refs)  # type: ignore[operator]
    with pytest.raises(ValueError):
        compute_metrics(["exact_match"], preds, refs)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_metrics_module_is_pure() -> None:
    path = Path(metrics.__file__)
    assert not _imported_modules(path) & {"torch", "transformers", "fastapi", "httpx", "requests"}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"open", "print"}


def test_evaluation_package_does_not_import_fastapi() -> None:
    for path in Path(metrics.__file__).parent.glob("*.py"):
        assert "fastapi" not in _imported_modules(path), path.name
