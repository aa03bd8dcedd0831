"""The word tables of the bundled corpus (`study/corpus.py`): every noun, adjective and verb it can use.

Each entry carries what the grammar needs to use the word correctly in both languages: French gender,
irregular plurals and conjugations, the English forms, and a semantic class (ANIMAL, FOOD, PLACE_A...)
that decides which verbs, adjectives and prepositions fit it, so that sentences are grammatical and make
sense ("le chat boit du lait", never "la table boit une clé"). Also here: the pronouns, tenses, tense
endings and the adverbial prepositions.

This is data, kept apart from the sampling and rendering in `corpus.py` so that a newcomer can find
and extend the vocabulary without reading the grammar code (and each module stays a readable size). Table
order matters: sampling picks from these tuples by index, so adding, removing or reordering an entry
changes the generated text, and `GENERATOR_VERSION` in `corpus.py` must then be bumped.
"""

from __future__ import annotations

from typing import NamedTuple


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
