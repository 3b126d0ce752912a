"""The repeated-phrase finder and the generation diff, on real WikiText-2 text with planted repeats."""

from __future__ import annotations

import pytest
from conftest import WIKI as WIKI_DIR

from collapse_tui.phrases import PhraseChange, compare, highlight_spans, repeated_phrases, word_diff, words

WIKI = WIKI_DIR / "valid.txt"


@pytest.fixture(scope="module")
def paragraphs() -> list[list[str]]:
    """Body paragraphs (not headings) of the validation split, as whitespace tokens."""
    lines = WIKI.read_text(encoding="utf-8").splitlines()
    return [line.split() for line in lines if len(line.split()) > 60 and not line.strip().startswith("=")]


def test_real_text_without_repeats(paragraphs):
    # the first two paragraphs (European lobster) repeat no 3-word phrase
    for tokens in paragraphs[:2]:
        text = " ".join(tokens)
        assert repeated_phrases(text) == []
        assert highlight_spans(text) == []
    assert compare([" ".join(paragraphs[0])], [" ".join(paragraphs[1])]) == []


def plant(tokens: list[str], phrase: list[str], at: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """Insert phrase before each word index in `at`; return the text and the phrase's char spans."""
    pieces, spans, pos, prev = [], [], 0, 0
    for i in at:
        before = " ".join(tokens[prev:i]) + " "
        pos += len(before)
        spans.append((pos, pos + len(" ".join(phrase))))
        pos += len(" ".join(phrase)) + 1
        pieces += [before, " ".join(phrase), " "]
        prev = i
    return "".join(pieces) + " ".join(tokens[prev:]), spans


def test_planted_phrase_found_once_as_maximal(paragraphs):
    base = paragraphs[0][:100]
    phrase = ["the", "Royal", "Australian", "Air", "Force", "squadron"]  # 6 words, none of them in `base` as a 3-gram
    text, spans = plant(base, phrase, [20, 70])
    found = repeated_phrases(text)
    assert [(p.key, p.count, p.spans) for p in found] == [("the royal australian air force squadron", 2, tuple(spans))]
    assert found[0].text == "the Royal Australian Air Force squadron"
    assert [text[a:b] for a, b in found[0].spans] == [" ".join(phrase)] * 2
    assert highlight_spans(text) == spans  # its 3-, 4- and 5-word parts are not reported on their own


def test_sub_phrase_reported_when_it_also_occurs_alone(paragraphs):
    base = paragraphs[1][:90]
    long = ["was", "promoted", "to", "air", "vice", "marshal"]
    text, long_spans = plant(base, long, [10, 40])
    tokens = text.split()  # single spaces, as WikiText is tokenized: the spans above stay valid
    text, short_spans = plant(tokens, long[:3], [len(tokens) - 5])  # its first 3 words once more, alone
    found = {p.key: p for p in repeated_phrases(text)}
    assert set(found) == {"was promoted to air vice marshal", "was promoted to"}
    assert (found["was promoted to air vice marshal"].count, found["was promoted to"].count) == (2, 3)
    assert found["was promoted to air vice marshal"].spans == tuple(long_spans)
    assert found["was promoted to"].spans == ((long_spans[0][0], long_spans[0][0] + 15),) + (
        (long_spans[1][0], long_spans[1][0] + 15),
        short_spans[0],
    )


def test_loops_and_case():
    assert [(p.key, p.count) for p in repeated_phrases("the the the the the the")] == [("the the the", 2)]
    assert [(p.key, p.count) for p in repeated_phrases(" ".join(["the"] * 301))] == [("the the the", 100)]
    assert [(p.key, p.count, p.spans) for p in repeated_phrases("a b a b a b a b")] == [("a b a", 2, ((0, 5), (8, 13)))]
    loop = repeated_phrases("I am a cat . I am a cat . I am a cat . I am a cat .")
    assert [(p.key, p.count) for p in loop] == [("i am a cat .", 4)]  # the loop's unit, not two units twice
    mixed = repeated_phrases("The Black Sea coast , and the black sea coast")  # WikiText's blanks
    assert [(p.key, p.text, p.spans) for p in mixed] == [
        ("the black sea coast", "The Black Sea coast", ((0, 19), (26, 45)))
    ]
    assert repeated_phrases("a b") == [] and repeated_phrases("") == []


def test_compare_generations(paragraphs):
    a, b = paragraphs[0][:80], paragraphs[1][:80]
    p = ["the", "hard", "shell", "of", "young", "animals"]
    q = ["on", "the", "Gulf", "of", "Carpentaria"]
    gen0 = [plant(a, p, [10, 50])[0], " ".join(b)]
    gen5 = [plant(a, p, [10, 30, 60])[0], plant(b, q, [5, 45])[0]]
    assert compare(gen0, gen5) == [
        PhraseChange("on the gulf of carpentaria", "on the Gulf of Carpentaria", "appeared", 0, 2),
        PhraseChange("the hard shell of young animals", "the hard shell of young animals", "grew", 2, 3),
    ]
    assert compare(gen5, gen0) == [
        PhraseChange("the hard shell of young animals", "the hard shell of young animals", "shrank", 3, 2),
        PhraseChange("on the gulf of carpentaria", "on the Gulf of Carpentaria", "vanished", 2, 0),
    ]
    assert compare(gen0, gen0) == []


def test_word_diff(paragraphs):
    a_tokens = paragraphs[0][:30]
    b_tokens = a_tokens[:5] + ["Norway", "lobster"] + a_tokens[7:20] + a_tokens[22:] + ["again"]
    a, b = " ".join(a_tokens), " ".join(b_tokens)
    diff = word_diff(a, b)
    assert diff == [
        ("equal", " ".join(a_tokens[:5])),
        ("delete", " ".join(a_tokens[5:7])),
        ("insert", "Norway lobster"),
        ("equal", " ".join(a_tokens[7:20])),
        ("delete", " ".join(a_tokens[20:22])),
        ("equal", " ".join(a_tokens[22:])),
        ("insert", "again"),
    ]
    assert " ".join(t for op, t in diff if op != "insert") == a
    assert " ".join(t for op, t in diff if op != "delete") == b
    assert word_diff(a, a) == [("equal", a)]


def test_words_keep_unk_and_spans():
    ws, spans = words("It is a <unk> lobster's claw")
    assert ws == ["it", "is", "a", "<unk>", "lobster's", "claw"]
    assert spans[3] == (8, 13)


def test_symbols_are_tokens_too(paragraphs):
    """A collapsing text model repeats WikiText's markup: a "= = = =" run, "@-@" joiners, a whole sentence."""
    base = paragraphs[0][:100]
    text, spans = plant(base, ["=", "=", "=", "="], [10, 60])
    # a loop of "=": reported as its unit of MIN_WORDS tokens, once per run (non-overlapping)
    assert [(p.key, p.count, p.spans) for p in repeated_phrases(text)] == [
        ("= = =", 2, tuple((a, a + 5) for a, _ in spans))
    ]
    sentence = "The species is found in the North Sea @-@ coast ."
    text, spans = plant(base, sentence.split(), [30, 80])
    found = repeated_phrases(text)
    assert [(p.text, p.spans) for p in found] == [(sentence, tuple(spans))]
    assert compare([" ".join(base)], [text]) == [PhraseChange(sentence.lower(), sentence, "appeared", 0, 2)]
