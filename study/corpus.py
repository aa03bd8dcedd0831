"""The bundled offline corpus (`--data sample`): grammatical English→French pairs from a small grammar.

A tiny T5 must learn this in minutes on a CPU, so the vocabulary is small (a few hundred word forms per
language) and sentences are short (2–14 words, ~6.5 on average); but the French is real French. Each is first
sampled as a *meaning* (subject, verb, tense, polarity, question or statement, complement, optional
adverbial phrase) and then rendered by two independent functions, `_render_en` and `_render_fr`.

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

GENERATOR_VERSION = "2"  # bump whenever the generated text changes (the data module caches on it)

_MAX_PAIRS = 1_000_000  # refused outright: rejection sampling of this many distinct pairs gets too slow


# ============================================================================================
# Grammar tables
# ============================================================================================


class Noun(NamedTuple):
    fr: str
    fr_pl: str
    gender: str  # "m" | "f"
    en: str
    en_pl: str
    cls: str  # semantic class, used to decide which verbs/adjectives/prepositions fit
    dets: tuple[str, ...]  # allowed determiners: def (le), indef (un), part (du), poss (mon)


def _n(fr: str, g: str, en: str, cls: str, dets: str, fr_pl: str = "", en_pl: str = "") -> Noun:
    return Noun(fr, fr_pl or fr + "s", g, en, en_pl or en + "s", cls, tuple(dets.split()))


_ANY = "def indef poss"
NOUNS: tuple[Noun, ...] = (
    _n("homme", "m", "man", "ADULT", "def indef", en_pl="men"),  # h muet: "l'homme"
    _n("femme", "f", "woman", "ADULT", "def indef", en_pl="women"),
    _n("garçon", "m", "boy", "CHILD", "def indef"),
    _n("fille", "f", "girl", "CHILD", "def indef"),
    _n("frère", "m", "brother", "FAMILY", "poss"),  # "mon frère", never "le frère"
    _n("sœur", "f", "sister", "FAMILY", "poss"),
    _n("chat", "m", "cat", "ANIMAL", _ANY),
    _n("chien", "m", "dog", "ANIMAL", _ANY),
    _n("oiseau", "m", "bird", "ANIMAL", _ANY, fr_pl="oiseaux"),
    _n("souris", "f", "mouse", "ANIMAL", _ANY, fr_pl="souris", en_pl="mice"),
    _n("pomme", "f", "apple", "FOOD", _ANY),
    _n("gâteau", "m", "cake", "FOOD", _ANY, fr_pl="gâteaux"),
    _n("orange", "f", "orange", "FOOD", _ANY),
    # mass nouns: singular only, partitive "du pain" ↔ zero article "bread"
    _n("pain", "m", "bread", "MASS", "def part"),
    _n("fromage", "m", "cheese", "MASS", "def part"),
    _n("soupe", "f", "soup", "MASS", "def part"),
    _n("eau", "f", "water", "DRINK", "def part"),
    _n("lait", "m", "milk", "DRINK", "def part"),
    _n("café", "m", "coffee", "DRINK", "def part"),
    _n("livre", "m", "book", "THING", _ANY),
    _n("sac", "m", "bag", "THING", _ANY),
    _n("clé", "f", "key", "THING", _ANY),
    _n("voiture", "f", "car", "THING", _ANY),
    _n("vélo", "m", "bike", "THING", _ANY),
    _n("chapeau", "m", "hat", "THING", _ANY, fr_pl="chapeaux"),
    _n("lettre", "f", "letter", "THING", _ANY),
    _n("ordinateur", "m", "computer", "THING", _ANY),
    # places (singular only): "à" places, "dans" places, and things one is on/under
    _n("marché", "m", "market", "PLACE_A", "def"),
    _n("école", "f", "school", "PLACE_A", "def"),
    _n("gare", "f", "station", "PLACE_A", "def"),
    _n("plage", "f", "beach", "PLACE_A", "def"),
    _n("parc", "m", "park", "PLACE_A", "def"),
    _n("hôtel", "m", "hotel", "PLACE_A", "def"),  # h muet: "à l'hôtel", not "au hôtel"
    _n("maison", "f", "house", "PLACE_IN", "def poss"),
    _n("jardin", "m", "garden", "PLACE_IN", "def poss"),
    _n("cuisine", "f", "kitchen", "PLACE_IN", "def poss"),
    _n("table", "f", "table", "PLACE_ON", "def"),
    _n("lit", "m", "bed", "PLACE_ON", "def"),
    _n("arbre", "m", "tree", "PLACE_ON", "def"),
)
_SINGULAR_ONLY = ("MASS", "DRINK", "PLACE_A", "PLACE_IN", "PLACE_ON")
_ANIMATE = ("ADULT", "CHILD", "FAMILY", "ANIMAL")
_PLACES = ("PLACE_A", "PLACE_IN", "PLACE_ON")


class Adj(NamedTuple):
    fr: tuple[str, str, str, str, str]  # masc sg, masc sg before a vowel (bel), fem sg, masc pl, fem pl
    en: str
    pre: bool  # French position: before the noun (petit, beau...) or after it (rouge, noir...)
    classes: tuple[str, ...]  # noun classes it may qualify attributively


def _a(forms: str, en: str, pre: bool, classes: tuple[str, ...]) -> Adj:
    f = forms.split()
    return Adj((f[0], f[0], f[1], f[2], f[3]) if len(f) == 4 else tuple(f), en, pre, classes)  # type: ignore[arg-type]


_OBJ = ("ANIMAL", "THING") + _PLACES
ADJS: dict[str, Adj] = {
    # before the noun; beau/nouveau/vieux have a special masculine form before a vowel: "le vieil homme"
    "petit": _a("petit petite petits petites", "small", True, ("CHILD", "FOOD") + _OBJ),
    "grand": _a("grand grande grands grandes", "big", True, ("CHILD",) + _OBJ),
    "beau": _a("beau bel belle beaux belles", "beautiful", True, _OBJ),
    "nouveau": _a("nouveau nouvel nouvelle nouveaux nouvelles", "new", True, ("THING", "PLACE_A", "PLACE_IN")),
    "vieux": _a("vieux vieil vieille vieux vieilles", "old", True, ("ADULT",) + _OBJ),
    "jeune": _a("jeune jeune jeunes jeunes", "young", True, ("ADULT", "ANIMAL")),
    "bon": _a("bon bonne bons bonnes", "good", True, ("FOOD", "MASS", "DRINK")),
    # after the noun
    "rouge": _a("rouge rouge rouges rouges", "red", False, ("THING", "FOOD")),
    "noir": _a("noir noire noirs noires", "black", False, ("ANIMAL", "THING")),
    "blanc": _a("blanc blanche blancs blanches", "white", False, ("ANIMAL", "THING")),
    "vert": _a("vert verte verts vertes", "green", False, ("THING", "FOOD")),
    # predicate only ("elle est contente")
    "content": _a("content contente contents contentes", "happy", False, ()),
    "triste": _a("triste triste tristes tristes", "sad", False, ()),
    "fatigué": _a("fatigué fatiguée fatigués fatiguées", "tired", False, ()),
    "malade": _a("malade malade malades malades", "sick", False, ()),
}
_PRED_ANIMATE = tuple(ADJS[k] for k in ("content", "triste", "fatigué", "malade"))
_PRED_THING = tuple(ADJS[k] for k in ("rouge", "noir", "blanc", "vert", "petit", "grand", "nouveau", "vieux"))


class Verb(NamedTuple):
    fr: str
    present: tuple[str, ...]  # je, tu, il, nous, vous, ils
    fut: str  # future stem: manger-, ir-, ser-...
    pp: str  # past participle
    aux: str  # "avoir" | "être" (passé composé auxiliary) | "imp" (stative: imparfait for the past)
    en: tuple[str, str, str]  # base, 3rd person singular, simple past
    frame: str  # "obj" (direct object) | "intr" | "motion" (place complement) | "be"
    objs: tuple[str, ...]  # noun classes or nouns allowed as object ("obj" frame)
    dets: tuple[str, ...]  # determiners allowed on the object
    adjuncts: tuple[str, ...]  # optional adverbials: "loc" (dans le jardin), "with" (avec), "for" (pour)
    animals: bool  # may an animal be the subject?
    places: tuple[tuple[str, str, tuple[str, ...]], ...]  # "motion": (fr prep, en prep, place classes)
    place_required: bool


def _verb(inf: str, conj: str, en: str, frame: str = "obj", aux: str = "avoir", objs: str = "",
          dets: str = "def indef part poss", adjuncts: str = "", animals: bool = False,
          places: tuple = (), place_required: bool = False) -> Verb:
    """`conj` is "er"/"ir"/"re" for regular verbs, else "6 present forms|future stem|participle"."""
    st = inf[:-2]
    if conj == "er":  # mange, manges, mange, mangeons (g+e keeps the soft g), mangez, mangent
        pres = [st + "e", st + "es", st + "e", st + ("eons" if st.endswith("g") else "ons"), st + "ez", st + "ent"]
        fut, pp = inf, st + "é"
    elif conj == "ir":  # finis, finis, finit, finissons, finissez, finissent
        pres = [st + "is", st + "is", st + "it", st + "issons", st + "issez", st + "issent"]
        fut, pp = inf, st + "i"
    elif conj == "re":  # vends, vends, vend, vendons, vendez, vendent; future drops the final -e
        pres = [st + "s", st + "s", st, st + "ons", st + "ez", st + "ent"]
        fut, pp = inf[:-1], st + "u"
    else:
        forms, fut, pp = conj.split("|")
        pres = forms.split()
    base, s3, past = en.split("/")
    return Verb(inf, tuple(pres), fut, pp, aux, (base, s3, past), frame, tuple(objs.split()),
                tuple(dets.split()), tuple(adjuncts.split()), animals, places, place_required)


_A, _IN, _ON = ("PLACE_A",), ("PLACE_IN",), ("table", "lit")
_PEOPLE = "ADULT CHILD FAMILY"
VERBS: tuple[Verb, ...] = (
    # être / avoir / vouloir are stative: imparfait in the past ("j'étais", "j'avais", "je voulais")
    _verb("être", "suis es est sommes êtes sont|ser|été", "be/is/was", "be", "imp", animals=True),
    _verb("avoir", "ai as a avons avez ont|aur|eu", "have/has/had", aux="imp", objs="ANIMAL THING", dets="def indef"),
    _verb("vouloir", "veux veux veut voulons voulez veulent|voudr|voulu", "want/wants/wanted", aux="imp",
          objs="FOOD MASS DRINK THING ANIMAL", animals=True),
    # irregular verbs with avoir
    _verb("faire", "fais fais fait faisons faites font|fer|fait", "make/makes/made", objs="gâteau soupe",
          adjuncts="for loc"),
    _verb("prendre", "prends prends prend prenons prenez prennent|prendr|pris", "take/takes/took",
          objs="THING FOOD", dets="def indef poss", adjuncts="loc"),
    _verb("voir", "vois vois voit voyons voyez voient|verr|vu", "see/sees/saw", objs=f"{_PEOPLE} ANIMAL THING",
          dets="def indef poss", adjuncts="loc", animals=True),
    _verb("boire", "bois bois boit buvons buvez boivent|boir|bu", "drink/drinks/drank", objs="DRINK",
          adjuncts="loc", animals=True),
    _verb("lire", "lis lis lit lisons lisez lisent|lir|lu", "read/reads/read", objs="livre lettre",
          dets="def indef poss", adjuncts="loc"),
    _verb("dormir", "dors dors dort dormons dormez dorment|dormir|dormi", "sleep/sleeps/slept", "intr",
          adjuncts="loc", animals=True),
    # acheter: è in the stressed forms and the future ("j'achète", "j'achèterai")
    _verb("acheter", "achète achètes achète achetons achetez achètent|achèter|acheté", "buy/buys/bought",
          objs="FOOD MASS THING", adjuncts="loc for"),
    # regular -er, -ir, -re verbs with avoir
    _verb("manger", "er", "eat/eats/ate", objs="FOOD MASS", adjuncts="loc", animals=True),
    _verb("regarder", "er", "watch/watches/watched", objs=f"{_PEOPLE} ANIMAL", dets="def indef poss",
          adjuncts="loc", animals=True),
    # aimer is "love" with people and animals, "like" with things ("j'aime le gâteau" ↔ "I like the cake")
    _verb("aimer", "er", "love/loves/loved", objs=f"{_PEOPLE} ANIMAL", dets="def poss", animals=True),
    _verb("aimer", "er", "like/likes/liked", objs="FOOD THING", dets="def poss", animals=True),
    _verb("chercher", "er", "look for/looks for/looked for", objs="CHILD FAMILY ANIMAL THING",
          dets="def indef poss", adjuncts="loc", animals=True),
    _verb("trouver", "er", "find/finds/found", objs="ANIMAL THING", dets="def indef poss", adjuncts="loc",
          animals=True),
    _verb("jouer", "er", "play/plays/played", "intr", adjuncts="with loc", animals=True),
    _verb("finir", "ir", "finish/finishes/finished", objs="gâteau soupe livre lettre", dets="def poss"),
    _verb("vendre", "re", "sell/sells/sold", objs="THING FOOD", dets="def indef poss", adjuncts="loc"),
    _verb("attendre", "re", "wait for/waits for/waited for", objs=f"{_PEOPLE} ANIMAL",
          dets="def indef poss", adjuncts="loc", animals=True),
    # verbs of motion take être in the passé composé, and the participle agrees with the subject
    _verb("aller", "vais vas va allons allez vont|ir|allé", "go/goes/went", "motion", "être", animals=True,
          places=(("à", "to", _A),), place_required=True),
    _verb("venir", "viens viens vient venons venez viennent|viendr|venu", "come/comes/came", "motion",
          "être", animals=True, places=(("à", "to", _A),)),
    _verb("arriver", "er", "arrive/arrives/arrived", "motion", "être", animals=True, places=(("à", "at", _A),)),
    _verb("entrer", "er", "enter/enters/entered", "motion", "être", animals=True,
          places=(("dans", "", _IN + ("école", "gare", "hôtel")),), place_required=True),
    _verb("rester", "er", "stay/stays/stayed", "motion", "être", animals=True,
          places=(("à", "at", _A), ("dans", "in", _IN))),
    _verb("tomber", "er", "fall/falls/fell", "motion", "être", animals=True,
          places=(("dans", "in", _IN), ("sur", "on", _ON))),
    _verb("partir", "pars pars part partons partez partent|partir|parti", "leave/leaves/left", "motion",
          "être", adjuncts="with", animals=True),
    _verb("sortir", "sors sors sort sortons sortez sortent|sortir|sorti", "go out/goes out/went out",
          "motion", "être", adjuncts="with", animals=True),
)
_ETRE, _AVOIR = VERBS[0], VERBS[1]
_VERB_POOL = VERBS + (_ETRE, _ETRE)  # être three times as likely: predicate agreement ("elles sont contentes")

# adverbials: where (any place), with whom, for whom
_LOCATIONS = (("à", "at", _A), ("dans", "in", _IN), ("sur", "on", _ON), ("sous", "under", _ON + ("arbre",)))
_FUT_END = ("ai", "as", "a", "ons", "ez", "ont")
_IMP_END = ("ais", "ais", "ait", "ions", "iez", "aient")
_PRONOUNS = (("I", "je"), ("you", "tu"), ("he", "il"), ("she", "elle"),
             ("we", "nous"), ("you", "vous"), ("they", "ils"), ("they", "elles"))
_PRON_PERSON = (0, 1, 2, 2, 3, 4, 5, 5)  # index into the six conjugated forms
_TENSES = ("present", "past", "future")


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
