"""Repeated phrases inside a text, and how they change between two generations' texts.

Within one text, a phrase is a run of n >= 3 tokens (blank-separated, symbols included: WikiText's "= = =" headings and
"@-@" joiners are what a collapsing model repeats; case is ignored) that occurs at least twice, without
overlap, inside one text. Only maximal repeats are kept: a
shorter phrase whose every occurrence lies inside occurrences of a longer one is left out, and a
loop ('a b c a b c a b c') is reported as its unit with its count, not as the unit twice.
Across texts (one generation's continuations, one per prompt), a shared phrase is a run of n >= 5 tokens
found in two or more of them: what a model collapsed onto one sentence continues every prompt with.
Plain Python, no UI: the Textual app highlights the spans this returns.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass

TOKEN_RE = re.compile(r"\S+")
MIN_WORDS = 3
SHARED_MIN_WORDS = 5  # shorter runs ("one of the", ", and the") are shared by real text's prompts too


@dataclass(frozen=True)
class Phrase:
    key: str  # the words, lower case, joined by one space
    text: str  # the first occurrence as written
    count: int  # non-overlapping occurrences
    spans: tuple[tuple[int, int], ...]  # character spans (start, end) of those occurrences in the text

    @property
    def words(self) -> int:
        return self.key.count(" ") + 1


@dataclass(frozen=True)
class SharedPhrase:
    key: str  # the words, lower case, joined by one space
    text: str  # its first occurrence as written, blanks and line breaks as one blank
    texts: int  # how many of the texts hold it


@dataclass(frozen=True)
class PhraseChange:
    key: str
    text: str  # as first written in either generation
    kind: str  # 'appeared', 'grew', 'shrank' or 'vanished'
    before: int  # occurrences in the first generation's texts (summed over texts where it repeats)
    after: int


def words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Lower-case tokens (every blank-separated one) and their character spans."""
    found = list(TOKEN_RE.finditer(text))
    return [m.group().lower() for m in found], [m.span() for m in found]


def _non_overlapping(starts: list[int], n: int) -> list[int]:
    out: list[int] = []
    for p in starts:
        if not out or p >= out[-1] + n:
            out.append(p)
    return out


def _maximal_repeats(ws: list[str], min_words: int) -> list[tuple[int, list[int]]]:
    """(length, start positions) of every repeat that can be extended neither left nor right
    without losing an occurrence. Groups of equal n-grams are split by their next word, so the
    work is about the total length of the repeats, not all n-grams of all lengths."""
    first: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for p in range(len(ws) - min_words + 1):
        first[tuple(ws[p : p + min_words])].append(p)
    out: list[tuple[int, list[int]]] = []
    stack = [(min_words, starts) for starts in first.values() if len(starts) > 1]
    while stack:
        n, starts = stack.pop()
        while True:
            nxt: dict[str | None, list[int]] = defaultdict(list)
            for p in starts:
                nxt[ws[p + n] if p + n < len(ws) else None].append(p)
            if len(nxt) == 1 and None not in nxt:
                n += 1  # every occurrence goes on with the same word: not right-maximal yet
                continue
            break
        before = {ws[p - 1] if p > 0 else None for p in starts}
        if len(before) > 1 or None in before:  # left-maximal
            out.append((n, starts))
        stack += [(n + 1, sub) for w, sub in nxt.items() if w is not None and len(sub) > 1]
    return out


def _loop_unit(phrase: list[str], min_words: int) -> int:
    """For a phrase made of two or more copies of a shorter unit ('the the the the', 'a b c a b c a'),
    the length of the unit it is reported as (its period, at least min_words); else 0."""
    n = len(phrase)
    border = [0] * n  # prefix function: the longest proper prefix that is also a suffix
    for i in range(1, n):
        k = border[i - 1]
        while k and phrase[i] != phrase[k]:
            k = border[k - 1]
        border[i] = k + (phrase[i] == phrase[k])
    period = n - border[-1]
    unit = max(period, min_words)
    return unit if 2 * period <= n and n > unit else 0


def repeated_phrases(text: str, min_words: int = MIN_WORDS) -> list[Phrase]:
    """Phrases of min_words or more words that repeat inside text, most frequent first."""
    ws, spans = words(text)
    found: dict[tuple[str, ...], tuple[int, list[int]]] = {}
    for n, starts in _maximal_repeats(ws, min_words):
        unit = _loop_unit(ws[starts[0] : starts[0] + n], min_words)
        if unit:  # a loop: count its unit wherever it occurs
            key = tuple(ws[starts[0] : starts[0] + unit])
            if key in found:
                continue
            n, starts = unit, [p for p in range(len(ws) - unit + 1) if tuple(ws[p : p + unit]) == key]
        occ = _non_overlapping(starts, n)
        if len(occ) > 1:
            found.setdefault(tuple(ws[occ[0] : occ[0] + n]), (n, occ))
    kept: list[tuple[int, list[int]]] = []
    covered: list[tuple[int, int]] = []  # word ranges of kept occurrences
    for n, occ in sorted(found.values(), key=lambda f: (-f[0], f[1])):
        if all(any(a <= p and p + n <= b for a, b in covered) for p in occ):
            continue  # only ever seen inside a longer repeated phrase
        kept.append((n, occ))
        covered += [(p, p + n) for p in occ]
    phrases = []
    for n, occ in kept:
        where = tuple((spans[p][0], spans[p + n - 1][1]) for p in occ)
        phrases.append(Phrase(" ".join(ws[occ[0] : occ[0] + n]), text[slice(*where[0])], len(occ), where))
    return sorted(phrases, key=lambda ph: (-ph.count, -ph.words, ph.spans[0]))


def highlight_spans(text: str, min_words: int = MIN_WORDS) -> list[tuple[int, int]]:
    """Merged character spans of all repeated phrases in text, in order."""
    spans = sorted(s for ph in repeated_phrases(text, min_words) for s in ph.spans)
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def repeat_counts(texts: list[str], keys: set[str]) -> dict[str, int]:
    """Per phrase key: non-overlapping occurrences summed over the texts in which it repeats."""
    by_len: dict[int, list[str]] = defaultdict(list)
    for key in keys:
        by_len[key.count(" ") + 1].append(key)
    totals = dict.fromkeys(keys, 0)
    for text in texts:
        ws = words(text)[0]
        for n, group in by_len.items():
            grams: dict[str, list[int]] = defaultdict(list)
            for p in range(len(ws) - n + 1):
                grams[" ".join(ws[p : p + n])].append(p)
            for key in group:
                count = len(_non_overlapping(grams.get(key, []), n))
                if count > 1:
                    totals[key] += count
    return totals


def compare(before: list[str], after: list[str], min_words: int = MIN_WORDS) -> list[PhraseChange]:
    """Repeated phrases that appeared, grew, shrank or vanished from one generation's texts to the
    next'. Each phrase found repeating in either side is counted on both sides, so a phrase that was
    maximal in one generation and part of a longer one in the other still compares by its count."""
    shown: dict[str, str] = {}
    for text in [*before, *after]:
        for ph in repeated_phrases(text, min_words):
            shown.setdefault(ph.key, ph.text)
    keys = set(shown)
    counts_before, counts_after = repeat_counts(before, keys), repeat_counts(after, keys)
    changes = []
    for key in sorted(keys):
        a, b = counts_before[key], counts_after[key]
        if a == b:
            continue
        kind = "appeared" if a == 0 else "vanished" if b == 0 else "grew" if b > a else "shrank"
        changes.append(PhraseChange(key, shown[key], kind, a, b))
    order = {"appeared": 0, "grew": 1, "shrank": 2, "vanished": 3}
    return sorted(changes, key=lambda c: (order[c.kind], -abs(c.after - c.before), c.key))


def shared_phrases(texts: list[str], top: int = 5, min_words: int = SHARED_MIN_WORDS) -> list[SharedPhrase]:
    """The top phrases of min_words or more words found in the most texts (two at least), then the longest;
    a phrase inside a longer one shown, held by as many texts, is left out."""
    ws: list[str] = []
    spans: list[tuple[int, int]] = []
    owner: list[int] = []  # the text of each word
    for i, text in enumerate(texts):
        w, sp = words(text)
        ws += [*w, f"\x00{i}"]  # a word of no text: no repeat runs across two texts
        spans += [*sp, (0, 0)]
        owner += [i] * (len(w) + 1)
    found = []
    for n, starts in _maximal_repeats(ws, min_words):
        held = len({owner[p] for p in starts})
        if held > 1:
            found.append((held, n, starts[0]))
    shown: list[SharedPhrase] = []
    for held, n, p in sorted(found, key=lambda f: (-f[0], -f[1], f[2])):
        key = " ".join(ws[p : p + n])
        if any(ph.texts == held and f" {key} " in f" {ph.key} " for ph in shown):
            continue
        text = " ".join(texts[owner[p]][spans[p][0] : spans[p + n - 1][1]].split())
        shown.append(SharedPhrase(key, text, held))
        if len(shown) == top:
            break
    return shown


def texts_holding(texts: list[str], key: str) -> int:
    """How many texts hold the phrase key (lower-case words joined by one space)."""
    return sum(f" {key} " in f" {' '.join(words(t)[0])} " for t in texts)


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """Word-level diff of two texts: (op, text) pieces with op 'equal', 'delete' or 'insert'."""
    ta, tb = TOKEN_RE.findall(a), TOKEN_RE.findall(b)
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(("equal", " ".join(ta[i1:i2])))
            continue
        if i2 > i1:
            out.append(("delete", " ".join(ta[i1:i2])))
        if j2 > j1:
            out.append(("insert", " ".join(tb[j1:j2])))
    return out
