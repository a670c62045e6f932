"""Brown tags: removing the title/headline/citation markers, and mapping to the 12 universal tags.

The Brown tagset (Francis & Kucera 1979) writes a tag as a base tag, optionally followed by
``*`` (negation fused into the word, e.g. ``md*`` for *can't*) or ``$`` (possessive), optionally
joined to other tags with ``+`` for contractions (``ppss+md`` for *I'll*), optionally prefixed
with ``fw-`` (foreign word) and suffixed with the markers ``-tl`` (word in a title), ``-hl``
(word in a headline) and ``-nc`` (cited word), which may be stacked (``nn-tl-hl``). A handful
of tags in the corpus are truncated (``fw-in+at-t``, ``ppss+ber-n``): the dangling ``-t``/``-n``
is read as a cut-off marker.

The universal tagset is the 12 coarse tags of Petrov, Das & McDonald (2012). The table below
is this project's own: every base tag of the Brown tagset is listed with its universal tag.
Rules applied before the table look-up:

- markers ``-tl``/``-hl``/``-nc`` are removed;
- ``fw-`` (foreign word) maps to ``X`` whatever follows;
- a contraction ``a+b`` takes the universal tag of its first part (*I'll* -> ``PRON``,
  *won't* ``md*`` -> ``VERB``), so that every token keeps exactly one tag;
- a trailing ``*`` (fused negation) or ``$`` (possessive) is dropped, except that ``*`` alone
  (*not*, *n't*) is an adverb.
"""

from __future__ import annotations

import re

UNIVERSAL_TAGS = (
    "ADJ",
    "ADP",
    "ADV",
    "CONJ",
    "DET",
    "NOUN",
    "NUM",
    "PRON",
    "PRT",
    "VERB",
    ".",
    "X",
)
"""The 12 universal part-of-speech tags, in alphabetical order with ``.`` and ``X`` last."""

# Base Brown tags (lower case, no markers, no '$'/'*' suffix) -> universal tag.
BROWN_TO_UNIVERSAL: dict[str, str] = {
    # punctuation
    ".": ".",
    ",": ".",
    ":": ".",
    "(": ".",
    ")": ".",
    "--": ".",
    "``": ".",
    "''": ".",
    "'": ".",
    # determiners, articles, quantifiers
    "abn": "DET",  # pre-quantifier: all, half, many
    "abx": "DET",  # pre-quantifier/double conjunction: both
    "ap": "DET",  # post-determiner: many, several, next, other
    "at": "DET",  # article
    "dt": "DET",  # singular determiner: this, that
    "dti": "DET",  # singular or plural determiner: some, any
    "dts": "DET",  # plural determiner: these, those
    "dtx": "DET",  # determiner/double conjunction: either, neither
    "ex": "DET",  # existential there (as PTB EX)
    "wdt": "DET",  # wh-determiner: what, which
    # qualifiers and adverbs
    "abl": "ADV",  # pre-qualifier: quite, rather
    "ql": "ADV",  # qualifier: very, too
    "qlp": "ADV",  # post-qualifier: enough, indeed
    "rb": "ADV",
    "rbr": "ADV",
    "rbt": "ADV",
    "rn": "ADV",  # nominal adverb: here, then
    "wql": "ADV",  # wh-qualifier: how
    "wrb": "ADV",  # wh-adverb: where, when
    "*": "ADV",  # not, n't
    # conjunctions and adpositions
    "cc": "CONJ",  # coordinating conjunction
    "cs": "ADP",  # subordinating conjunction (PTB tags these IN, which is ADP)
    "in": "ADP",  # preposition
    # numbers and adjectives
    "cd": "NUM",
    "od": "ADJ",  # ordinal: first, 2nd (PTB tags these JJ)
    "jj": "ADJ",
    "jjr": "ADJ",
    "jjs": "ADJ",  # semantically superlative adjective: chief, top
    "jjt": "ADJ",
    # nouns
    "nn": "NOUN",
    "nns": "NOUN",
    "np": "NOUN",
    "nps": "NOUN",
    "nr": "NOUN",  # adverbial noun: home, today, west
    "nrs": "NOUN",
    # pronouns
    "pn": "PRON",  # nominal pronoun: everybody, nothing
    "pp": "PRON",  # truncated pronoun tag occurring in a contraction (wdt+ber+pp)
    "pp$": "PRON",  # possessive determiner: my, your (kept apart from '$' stripping)
    "pp$$": "PRON",  # possessive pronoun: mine, yours
    "ppl": "PRON",  # reflexive pronoun
    "ppls": "PRON",
    "ppo": "PRON",
    "pps": "PRON",
    "ppss": "PRON",
    "wp": "PRON",
    "wpo": "PRON",
    "wps": "PRON",
    # particles
    "rp": "PRT",  # adverbial particle: up, out
    "to": "PRT",  # infinitival to
    # verbs (be, do, have, modals and lexical verbs)
    "be": "VERB",
    "bed": "VERB",
    "bedz": "VERB",
    "beg": "VERB",
    "bem": "VERB",
    "ben": "VERB",
    "ber": "VERB",
    "bez": "VERB",
    "do": "VERB",
    "dod": "VERB",
    "doz": "VERB",
    "hv": "VERB",
    "hvd": "VERB",
    "hvg": "VERB",
    "hvn": "VERB",
    "hvz": "VERB",
    "md": "VERB",
    "vb": "VERB",
    "vbd": "VERB",
    "vbg": "VERB",
    "vbn": "VERB",
    "vbz": "VERB",
    # other
    "fw": "X",  # foreign word
    "nil": "X",  # no tag assigned
    "uh": "X",  # interjection (no universal tag of its own)
}

_MARKERS = re.compile(r"(?:-(?:tl|hl|nc|t|h|n))+$")


def strip_markers(tag: str) -> str:
    """Remove the ``-tl``, ``-hl`` and ``-nc`` markers (stacked or truncated) from a Brown tag.

    ``nn-tl-hl`` -> ``nn``, ``---hl`` -> ``--``, ``fw-in+at-t`` -> ``fw-in+at``. Everything
    else (``fw-`` prefix, ``*``, ``$``, ``+`` compounds) is kept.
    """
    stripped = _MARKERS.sub("", tag)
    return stripped or tag


def _universal_of_part(part: str) -> str | None:
    if part in BROWN_TO_UNIVERSAL:
        return BROWN_TO_UNIVERSAL[part]
    base = part.rstrip("*$")
    if base in BROWN_TO_UNIVERSAL:
        return BROWN_TO_UNIVERSAL[base]
    return None


def brown_to_universal(tag: str) -> str:
    """Map one Brown tag (any case, with or without markers) to its universal tag.

    Raises
    ------
    KeyError
        When the base tag is not in :data:`BROWN_TO_UNIVERSAL`; the message names the tag.
    """
    t = strip_markers(tag.lower())
    if t.startswith("fw-") or t == "fw":
        return "X"
    first = t.split("+", 1)[0] if len(t) > 1 else t
    out = _universal_of_part(first)
    if out is None:
        raise KeyError(
            f"The Brown tag {tag!r} (base {first!r}) has no universal tag; add its base tag "
            f"to redundancy.data.universal.BROWN_TO_UNIVERSAL."
        )
    return out
