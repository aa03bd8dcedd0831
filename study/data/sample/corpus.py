"""The bundled offline corpus (`--data sample`): grammatical English→French pairs from a small grammar.

A tiny T5 must learn this in minutes on a CPU, so the vocabulary is small (a few hundred word forms per
language) and sentences are short (2–14 words, ~6.5 on average); but the French is real French. Each is first
sampled as a *meaning* (subject, verb, tense, polarity, question or statement, complement, optional
adverbial phrase) and then rendered by two independent functions, `_render_en` and `_render_fr`.
The words it draws from (nouns, adjectives, verbs with their forms and semantic classes) are in
`study/lexicon.py`; this module holds the sampling and the two renderers.

Tense mapping, one per tense: French présent ↔ English simple present ("I eat", "I do not eat"); passé
composé ↔ English simple past ("j'ai mangé" ↔ "I ate", "je n'ai pas mangé" ↔ "I did not eat"); futur
simple ↔ "will" ("je mangerai" ↔ "I will eat"). The three stative verbs être/avoir/vouloir use the
imparfait for the English simple past, as a French speaker would ("I was happy" ↔ "j'étais content").
Questions use "est-ce que" ("Est-ce qu'elle est allée au marché?"); negative sentences are statements.
French and English both end questions with "?" and statements with "." (no space before "?").
"vous" is always plural ("vous êtes allées"); je/tu/nous/vous get a sampled gender ("je suis contente").

Everything is deterministic: only `random.Random` instances seeded by the caller, tuples and lists in a
fixed order (never sets or dicts iterated for sampling), so output is identical across runs/processes.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from study.data.sample.lexicon import (
    _ANIMATE,
    _AVOIR,
    _ETRE,
    _FUT_END,
    _IMP_END,
    _LOCATIONS,
    _PRED_ANIMATE,
    _PRED_THING,
    _PRON_PERSON,
    _PRONOUNS,
    _SINGULAR_ONLY,
    _TENSES,
    _VERB_POOL,
    ADJS,
    NOUNS,
    Adj,
    Noun,
    Verb,
)

# Bump whenever the generated text changes: the figures in docs/ were measured on this text, and
# tests/test_corpus.py pins the text of the current version. (Caches key on the text itself, not on this.)
GENERATOR_VERSION = "2"

_MAX_PAIRS = 1_000_000  # refused outright: rejection sampling of this many distinct pairs gets too slow


# ============================================================================================
# Meanings and sampling
# ============================================================================================


class NP(NamedTuple):
    noun: Noun
    number: str  # "sg" | "pl"
    det: str
    adj: Adj | None


class Clause(NamedTuple):
    pron: int  # index into _PRONOUNS, or -1 when the subject is `subj`
    subj: NP | None
    gender: str  # of the subject (je/tu/nous/vous: sampled, so that "je suis allée" occurs)
    verb: Verb
    tense: str
    neg: bool
    question: bool
    comp: tuple | None  # ("obj", NP) | ("pp", fr_prep, en_prep, NP) | ("pred", Adj)
    adjunct: tuple | None  # ("pp", fr_prep, en_prep, NP)


_NOUN_CACHE: dict[tuple[str, ...], list[Noun]] = {}


def _nouns(spec: tuple[str, ...]) -> list[Noun]:
    """Nouns whose class or French form is in `spec`, in table order."""
    if spec not in _NOUN_CACHE:
        _NOUN_CACHE[spec] = [n for n in NOUNS if n.cls in spec or n.fr in spec]
    return _NOUN_CACHE[spec]


def _np(rng: random.Random, spec: tuple[str, ...], dets: tuple[str, ...], adj_p: float = 0.25,
        avoid: Noun | None = None) -> NP:
    noun = rng.choice([n for n in _nouns(spec) if n is not avoid and any(d in dets for d in n.dets)])
    det = rng.choice([d for d in noun.dets if d in dets])
    plural = noun.cls not in _SINGULAR_ONLY and det != "part" and rng.random() < 0.35
    adjs = [a for a in ADJS.values() if noun.cls in a.classes]
    adj = rng.choice(adjs) if adjs and rng.random() < adj_p else None
    return NP(noun, "pl" if plural else "sg", det, adj)


def _pp(rng: random.Random, options: tuple) -> tuple:
    fr_prep, en_prep, spec = rng.choice(options)
    return ("pp", fr_prep, en_prep, _np(rng, spec, ("def", "poss"), adj_p=0.15))


def _sample(rng: random.Random) -> Clause:
    verb = rng.choice(_VERB_POOL)
    tense = rng.choice(_TENSES)
    r = rng.random()
    neg, question = r < 0.25, 0.25 <= r < 0.5
    # subject: a pronoun half of the time, else a noun phrase ("le petit chat", "mes sœurs")
    subj, pron = None, -1
    if rng.random() < 0.5:
        pron = rng.randrange(len(_PRONOUNS))
        gender = "f" if pron in (3, 7) else "m" if pron in (2, 6) else rng.choice("mf")
    else:
        spec = _ANIMATE if verb.animals else ("ADULT", "CHILD", "FAMILY")
        if verb.frame == "be" and rng.random() < 0.3:
            spec = ("THING",)  # "la voiture est rouge", "les clés sont sous la table"
        subj = _np(rng, spec, ("def", "poss"))
        gender = subj.noun.gender
    comp = adjunct = None
    if verb.frame == "be":
        if rng.random() < 0.5:
            comp = _pp(rng, _LOCATIONS)
        elif subj and subj.noun.cls == "THING":  # "la voiture est rouge" (never "la voiture rouge est rouge")
            subj, comp = subj._replace(adj=None), ("pred", rng.choice(_PRED_THING))
        else:
            comp = ("pred", rng.choice(_PRED_ANIMATE))
    elif verb.frame == "obj":
        comp = ("obj", _np(rng, verb.objs, verb.dets, avoid=subj.noun if subj else None))
    elif verb.places and (verb.place_required or rng.random() < 0.7):
        comp = _pp(rng, verb.places)
    if verb.adjuncts and rng.random() < (0.6 if comp is None else 0.3):
        kind = rng.choice(verb.adjuncts)
        if kind == "loc":
            adjunct = _pp(rng, _LOCATIONS)
        else:  # "with" / "for" + a person or animal
            who = ("ADULT", "CHILD", "FAMILY") + (("ANIMAL",) if kind == "with" else ())
            adjunct = ("pp", "avec" if kind == "with" else "pour", kind, _np(rng, who, ("def", "poss"), 0.15,
                                                                            subj.noun if subj else None))
    return Clause(pron, subj, gender, verb, tense, neg, question, comp, adjunct)


def _person(c: Clause) -> int:
    if c.pron >= 0:
        return _PRON_PERSON[c.pron]
    return 5 if c.subj.number == "pl" else 2


def _number(c: Clause) -> str:
    return "pl" if _person(c) >= 3 else "sg"


# ============================================================================================
# Rendering: English
# ============================================================================================


def _en_np(np: NP) -> list[str]:
    noun = np.noun.en_pl if np.number == "pl" else np.noun.en
    words = ([np.adj.en] if np.adj else []) + [noun]
    if np.det == "def":
        return ["the", *words]
    if np.det == "poss":
        return ["my", *words]
    if np.det == "indef" and np.number == "sg":
        return ["an" if words[0][0] in "aeio" else "a", *words]
    return words  # plural indefinite and partitive: zero article ("I see cats", "I drink milk")


def _en_comp(x: tuple | None) -> list[str]:
    if x is None:
        return []
    if x[0] == "obj":
        return _en_np(x[1])
    if x[0] == "pred":
        return [x[1].en]
    return ([x[2]] if x[2] else []) + _en_np(x[3])


def _render_en(c: Clause) -> str:
    person, v = _person(c), c.verb
    third = person == 2
    subj = [_PRONOUNS[c.pron][0]] if c.pron >= 0 else _en_np(c.subj)
    base, s3, past = v.en
    if c.tense == "future":
        aux, rest = "will", ["be" if v.fr == "être" else base]
    elif v.fr == "être":  # be inverts and takes "not" itself: "Is she happy?", "I was not tired."
        aux, rest = ("am" if person == 0 else "is" if third else "are") if c.tense == "present" else (
            "was" if person in (0, 2) else "were"), []
    elif c.neg or c.question:  # do-support: "does not eat", "Did you eat...?"
        aux, rest = "did" if c.tense == "past" else "does" if third else "do", [base]
    else:
        aux, rest = None, [past if c.tense == "past" else s3 if third else base]
    tail = _en_comp(c.comp) + _en_comp(c.adjunct)
    if c.question:
        words = [aux, *subj, *rest, *tail]
    else:
        words = [*subj, *([aux] if aux else []), *(["not"] if c.neg else []), *rest, *tail]
    text = " ".join(words)
    return text[0].upper() + text[1:] + ("?" if c.question else ".")


# ============================================================================================
# Rendering: French
# ============================================================================================

_VOWELS = "aeiouyàâéèêëîïôœù"
_H_MUET = ("homme", "hôtel")  # mute h: elision and liaison as before a vowel ("l'homme", "l'hôtel")


def _vowel(word: str) -> bool:
    return word[0] in _VOWELS or word.startswith(_H_MUET)


def _adj_fr(adj: Adj, gender: str, number: str, next_word: str = "") -> str:
    if number == "pl":
        return adj.fr[4] if gender == "f" else adj.fr[3]
    if gender == "f":
        return adj.fr[2]
    return adj.fr[1] if next_word and _vowel(next_word) else adj.fr[0]  # "un vieil homme", "le bel oiseau"


def _fr_np(np: NP, negated: bool = False) -> list[str]:
    n, g = np.noun, np.noun.gender
    noun = n.fr_pl if np.number == "pl" else n.fr
    if np.adj is None:
        words = [noun]
    elif np.adj.pre:
        words = [_adj_fr(np.adj, g, np.number, noun), noun]
    else:
        words = [noun, _adj_fr(np.adj, g, np.number)]
    det = np.det
    if negated and det in ("indef", "part"):
        return ["de", *words]  # after a negation un/une/des/du become "de": "je n'ai pas de chien"
    if det == "def":  # le/la elide before a vowel later ("l'école"); à/de + le/les contract ("au")
        return ["les" if np.number == "pl" else "la" if g == "f" else "le", *words]
    if det == "poss":  # "mon" also before a feminine word starting with a vowel: "mon école"
        return ["mes" if np.number == "pl" else "mon" if g == "m" or _vowel(words[0]) else "ma", *words]
    if det == "part":  # "du pain", "de la soupe", "de l'eau"
        return ["de", "la" if g == "f" else "le", *words]
    if np.number == "pl":  # "des chats", but "de" before a plural adjective: "de petits chats"
        return ["de" if np.adj and np.adj.pre else "des", *words]
    return ["une" if g == "f" else "un", *words]


def _fr_comp(x: tuple | None, negated: bool, gender: str, number: str) -> list[str]:
    if x is None:
        return []
    if x[0] == "obj":
        return _fr_np(x[1], negated)
    if x[0] == "pred":  # predicate adjective agrees with the subject: "elles sont contentes"
        return [_adj_fr(x[1], gender, number)]
    return [x[1], *_fr_np(x[3])]


def _fr_verb(c: Clause) -> list[str]:
    v, p = c.verb, _person(c)
    if c.tense == "present":
        words = [v.present[p]]
    elif c.tense == "future":
        words = [v.fut + _FUT_END[p]]
    elif v.aux == "imp":  # imparfait stem: nous-form minus -ons, except être (ét-)
        words = [("ét" if v.fr == "être" else v.present[3][:-3]) + _IMP_END[p]]
    else:  # passé composé: auxiliary + participle; with être it agrees: "elles sont allées"
        pp = v.pp
        if v.aux == "être":
            pp += ("e" if c.gender == "f" else "") + ("s" if _number(c) == "pl" else "")
        words = [(_ETRE if v.aux == "être" else _AVOIR).present[p], pp]
    if c.neg:  # ne ... pas around the conjugated verb (the auxiliary in the passé composé)
        words = ["ne", words[0], "pas", *words[1:]]
    return words


def _finish_fr(tokens: list[str]) -> str:
    """Apply contractions (à le → au, de les → des...) and elision (je ai → j'ai, le homme → l'homme)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        t, nxt = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if t in ("à", "de") and (nxt == "les" or (nxt == "le" and not _vowel(tokens[i + 2]))):
            out.append({"àle": "au", "àles": "aux", "dele": "du", "deles": "des"}[t + nxt])
            i += 2
        else:
            out.append(t)
            i += 1
    text = ""
    for j, t in enumerate(out):
        if t in ("je", "le", "la", "ne", "de", "que") and j + 1 < len(out) and _vowel(out[j + 1]):
            text += t[:-1] + "'"
        else:
            text += t + " "
    return text.rstrip()


def _render_fr(c: Clause) -> str:
    number = _number(c)
    subj = [_PRONOUNS[c.pron][1]] if c.pron >= 0 else _fr_np(c.subj)
    tokens = subj + _fr_verb(c) + _fr_comp(c.comp, c.neg, c.gender, number) + _fr_comp(c.adjunct, False, "", "")
    if c.question:
        tokens = ["est-ce", "que", *tokens]
    text = _finish_fr(tokens)
    return text[0].upper() + text[1:] + ("?" if c.question else ".")


# ============================================================================================
# Public API
# ============================================================================================


def generate_pairs(n: int = 30000, seed: int = 0) -> list[tuple[str, str]]:
    """Return `n` distinct (english, french) pairs, deterministic for (n, seed), in a seeded random order.

    Raises ValueError if `n` is negative or more than the grammar can produce distinct pairs of
    (the grammar yields at least ~500,000 distinct pairs; requests above 1,000,000 are refused).
    """
    if n < 0 or n > _MAX_PAIRS:
        raise ValueError(f"cannot generate {n} distinct pairs: n must be between 0 and {_MAX_PAIRS}")
    rng = random.Random(seed)
    seen: dict[tuple[str, str], None] = {}  # insertion-ordered, so the order is the sampling order
    attempts, budget = 0, 20 * n + 1000
    while len(seen) < n:
        attempts += 1
        if attempts > budget:
            raise ValueError(f"the grammar produced only {len(seen)} distinct pairs out of {n} requested")
        c = _sample(rng)
        seen.setdefault((_render_en(c), _render_fr(c)), None)
    return list(seen)


def generate_monolingual(lang: str, n: int, seed: int = 1) -> list[str]:
    """Return `n` sentences of one language ("en" or "fr") sampled from the same grammar.

    Each language has its own RNG stream (derived from `seed` and `lang`), so the English and French
    lists are not translations of each other; meant for T5 span-corruption pre-training. Sentences may
    repeat. Raises ValueError for another `lang` or a negative `n`.
    """
    if lang not in ("en", "fr"):
        raise ValueError(f"lang must be 'en' or 'fr', not {lang!r}")
    if n < 0:
        raise ValueError(f"n must be non-negative, not {n}")
    rng = random.Random(seed * 1_000_003 + (1 if lang == "en" else 2))
    render = _render_en if lang == "en" else _render_fr
    return [render(_sample(rng)) for _ in range(n)]
