from gpt_service.engine.detokenizer import REPLACEMENT, IncrementalDetokenizer, StopStringMatcher
from tests.tiny_models import build_tokenizer

TEXT = "你好，世界！量子计算与蝴蝶效应 mixed with English 🙂 and 龘."


def test_chinese_split_across_byte_tokens_is_never_emitted_broken():
    tok = build_tokenizer()
    ids = tok.encode(TEXT, add_special_tokens=False)
    # The tiny vocabulary has no merges for rare characters: several tokens per character.
    assert len(ids) > len(TEXT)
    detok = IncrementalDetokenizer(tok, tok.encode("前缀", add_special_tokens=False))
    deltas = [detok.add(i) for i in ids]
    assert all(REPLACEMENT not in d for d in deltas)
    assert "".join(deltas) == TEXT
    assert any(d == "" for d in deltas)  # some tokens completed no character


def test_stop_string_is_cut_and_never_partially_emitted():
    matcher = StopStringMatcher(("<END>",))
    out = [matcher.push(p) for p in ["Hello ", "wor", "ld<E", "ND> ignored"]]
    assert "".join(out) + matcher.flush() == "Hello world"
    assert matcher.is_stopped
    assert all("<" not in o for o in out)


def test_earliest_of_several_stop_strings_wins():
    matcher = StopStringMatcher(("。", "\n"))
    text = matcher.push("第一句\n第二句。")
    assert text + matcher.flush() == "第一句"


def test_without_stop_strings_text_passes_straight_through():
    matcher = StopStringMatcher(())
    assert matcher.push("abc") == "abc" and matcher.flush() == ""


def test_stray_bytes_that_never_form_a_character_are_dropped():
    tok = build_tokenizer()
    good = tok.encode("你好", add_special_tokens=False)
    # Byte-level vocabularies have single-byte tokens: a lone continuation byte is invalid.
    stray = tok.convert_tokens_to_ids(["\u0122"])  # byte 0xA2 in the GPT-2 byte alphabet
    detok = IncrementalDetokenizer(tok, [])
    text = "".join(detok.add(i) for i in [*good, *stray, *good])
    assert text == "你好你好"
