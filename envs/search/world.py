"""A synthetic world for multi-hop search: invented entities, one document each, and questions.

Products are made by companies, companies are founded by people and headquartered in cities,
people are born in cities and study at universities, universities and cities sit in cities and
countries. All names are invented from syllables, so no answer can be recalled from world
knowledge: it must be read from the corpus. A question with ``difficulty`` d follows d facts,
each stated in a different entity's document, e.g. (d = 3) "In which city was the founder of the
company that made Quorvi X7 born?". The world is a pure function of ``(seed, size)``.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field

from rlagent.envs.search.corpus import Passage

# kind -> {relation: target kind}; every relation is functional (exactly one target).
RELATIONS = {
    "product": {"made_by": "company"},
    "company": {"founded_by": "person", "headquartered_in": "city"},
    "person": {"born_in": "city", "studied_at": "university"},
    "university": {"located_in": "city"},
    "city": {"in_country": "country"},
    "country": {},
}
ATTRIBUTES = {
    "product": ("category", "release_year"),
    "company": ("industry", "founded_year"),
    "person": ("occupation", "birth_year"),
    "university": ("established_year",),
    "city": ("population", "founded_year"),
    "country": ("currency", "language", "independence_year"),
}
# A relation inside a question: a noun phrase around the description of its subject. made_by
# is always innermost (nothing points at a product), the others nest: "the country of the
# birthplace of the founder of the company that made Quorvi X7".
PHRASES = {
    "made_by": "the company that made {x}",
    "founded_by": "the founder of {x}",
    "headquartered_in": "the headquarters city of {x}",
    "born_in": "the birthplace of {x}",
    "studied_at": "the alma mater of {x}",
    "located_in": "the home city of {x}",
    "in_country": "the country of {x}",
}
# The last fact of a question, relation or attribute: the question itself.
QUESTIONS = {
    "made_by": "Which company made {x}?",
    "founded_by": "Who founded {x}?",
    "headquartered_in": "In which city is {x} headquartered?",
    "born_in": "In which city was {x} born?",
    "studied_at": "Which university did {x} attend?",
    "located_in": "In which city is {x} located?",
    "in_country": "In which country is {x}?",
    "category": "What kind of product is {x}?",
    "release_year": "In what year was {x} released?",
    "industry": "In which industry does {x} operate?",
    "founded_year": "In what year was {x} founded?",
    "occupation": "What is the occupation of {x}?",
    "birth_year": "In what year was {x} born?",
    "established_year": "In what year was {x} established?",
    "population": "What is the population of {x}?",
    "currency": "What is the currency of {x}?",
    "language": "What language is spoken in {x}?",
    "independence_year": "In what year did {x} become independent?",
}
# Documents state every fact of their entity, one fixed sentence shape per fact.
TEMPLATES = {
    "product": "{name} is a {category} released in {release_year}. It was made by {made_by}.",
    "company": (
        "{name} is a {industry} company founded in {founded_year}. Its founder is "
        "{founded_by}. The company is headquartered in {headquartered_in}."
    ),
    "person": (
        "{name} is a {occupation} born in {birth_year} in the city of {born_in}. "
        "{name} studied at {studied_at}."
    ),
    "university": (
        "{name} is a university located in {located_in}. It was established in {established_year}."
    ),
    "city": (
        "{name} is a city in {in_country}, founded in {founded_year}. It has a population of {population}."
    ),
    "country": (
        "{name} is a country whose currency is the {currency}. Its language is "
        "{language}, and it became independent in {independence_year}."
    ),
}
_VALUES = {
    "category": [
        "handheld scanner",
        "water filter",
        "drone",
        "synthesizer",
        "e-reader",
        "bicycle",
        "espresso machine",
        "telescope",
        "smartwatch",
        "solar lantern",
    ],
    "industry": [
        "shipping",
        "textile",
        "software",
        "mining",
        "brewing",
        "aerospace",
        "pharmaceutical",
        "furniture",
        "robotics",
        "publishing",
    ],
    "occupation": [
        "botanist",
        "architect",
        "violinist",
        "cartographer",
        "chemist",
        "novelist",
        "glassblower",
        "economist",
        "surgeon",
        "astronomer",
        "sculptor",
        "linguist",
    ],
}
_ONSETS = [
    "b",
    "br",
    "c",
    "ch",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "j",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "pr",
    "qu",
    "r",
    "s",
    "sh",
    "st",
    "t",
    "th",
    "tr",
    "v",
    "w",
    "z",
]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ae", "ia", "ou", "ei"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "x", "nd", "rk", "m"]
_COMPANY_SUFFIX = ["Industries", "Works", "Labs", "Group", "Systems", "Holdings"]
_UNIVERSITY_SUFFIX = ["Institute", "College", "Academy", "University"]
_MODELS = ["X", "Pro", "Lumen", "Nova", "Mk", "Air", "Prime", "S"]
_ID_PREFIX = {
    "product": "pd",
    "company": "co",
    "person": "pe",
    "university": "un",
    "city": "ci",
    "country": "cn",
}
# "a aerospace company" -> "an aerospace company"; not before "u" ("a university").
_A_VOWEL = re.compile(r"\ba (?=[aeio])")


@dataclass
class Entity:
    id: str  # opaque doc id ("co0012"): the id must not give the name away
    kind: str
    name: str
    facts: dict[str, str] = field(default_factory=dict)  # relation or attribute -> value


class World:
    """Entities of every kind, drawn from ``random.Random(seed)``; ``size`` = number of people."""

    def __init__(self, seed: int = 0, size: int = 200):
        if isinstance(size, bool) or not isinstance(size, int) or size < 10:
            raise ValueError(f"world_size must be an int >= 10, got {size!r}")
        self.seed, self.size = seed, size
        self._rng = random.Random(f"rlagent-search-world-{seed}")
        self._names: set[str] = set()
        counts = {
            "country": max(3, size // 10),
            "city": max(6, size // 5),
            "university": max(3, size // 10),
            "person": size,
            "company": max(5, size // 2),
            "product": size,
        }
        self.by_kind: dict[str, list[Entity]] = {}
        self.by_name: dict[str, Entity] = {}
        # Targets before subjects: a relation picks among entities that already exist.
        for kind in ("country", "city", "university", "person", "company", "product"):
            self.by_kind[kind] = []
            for i in range(counts[kind]):
                e = self._entity(kind, i)
                self.by_kind[kind].append(e)
                self.by_name[e.name] = e
        self.by_id = {e.id: e for es in self.by_kind.values() for e in es}

    # --- names ------------------------------------------------------------------------------
    def _word(self, syllables: int) -> str:
        r = self._rng
        w = "".join(r.choice(_ONSETS) + r.choice(_VOWELS) for _ in range(syllables))
        return (w + r.choice(_CODAS)).capitalize()

    def _unique(self, make) -> str:
        while True:
            name = make()
            if name not in self._names:
                self._names.add(name)
                return name

    def _name(self, kind: str) -> str:
        r, w = self._rng, self._word
        make = {
            "person": lambda: f"{w(r.randint(1, 2))} {w(r.randint(2, 3))}",
            "company": lambda: f"{w(2)} {r.choice(_COMPANY_SUFFIX)}",
            "university": lambda: f"{w(2)} {r.choice(_UNIVERSITY_SUFFIX)}",
            "product": lambda: f"{w(2)} {r.choice(_MODELS)}{r.randint(2, 99)}",
        }.get(kind, lambda: w(r.randint(2, 3)))
        return self._unique(make)

    # --- facts ------------------------------------------------------------------------------
    def _entity(self, kind: str, i: int) -> Entity:
        r = self._rng
        e = Entity(id=f"{_ID_PREFIX[kind]}{i:04d}", kind=kind, name=self._name(kind))
        for rel, target in RELATIONS[kind].items():
            e.facts[rel] = r.choice(self.by_kind[target]).name
        for attr in ATTRIBUTES[kind]:
            if attr in _VALUES:
                e.facts[attr] = r.choice(_VALUES[attr])
            elif attr == "population":
                e.facts[attr] = f"{r.randint(12, 2400) * 100:,}"
            elif attr == "currency":
                e.facts[attr] = self._unique(lambda: self._word(1).lower())
            elif attr == "language":
                e.facts[attr] = self._unique(lambda: self._word(2) + r.choice(["ish", "ic", "i"]))
            else:
                e.facts[attr] = str(self._year(e))
        return e

    def _year(self, e: Entity) -> int:
        # Years agree along relations: a founder is 22 to 60 when founding the company, a
        # product comes out after its maker was founded.
        r = self._rng
        if e.kind == "company":
            return int(self.by_name[e.facts["founded_by"]].facts["birth_year"]) + r.randint(22, 60)
        if e.kind == "product":
            return min(2024, int(self.by_name[e.facts["made_by"]].facts["founded_year"]) + r.randint(1, 30))
        lo, hi = {"person": (1900, 1990), "city": (900, 1800), "country": (1500, 1990)}.get(
            e.kind, (1800, 2000)
        )
        return r.randint(lo, hi)

    def document(self, e: Entity) -> Passage:
        text = TEMPLATES[e.kind].format(name=e.name, **e.facts)
        return Passage(id=e.id, title=e.name, text=_A_VOWEL.sub("an ", text))

    def corpus(self) -> list[Passage]:
        """One passage per entity, in a fixed order."""
        return [self.document(e) for e in self.by_id.values()]

    # --- questions --------------------------------------------------------------------------
    def _depth(self, kind: str) -> int:
        """The longest chain of relations that starts at ``kind``."""
        return max((1 + self._depth(t) for t in RELATIONS[kind].values()), default=0)

    def question(self, rng: random.Random, hops: int) -> dict:
        """A question that needs ``hops`` documents, read one after another."""
        kinds = [k for k in RELATIONS if self._depth(k) >= hops - 1]
        start = rng.choice(self.by_kind[rng.choice(kinds)])
        path, e = [], start
        for left in range(hops - 1, 0, -1):  # relations to follow before the last fact
            rels = [r for r, t in RELATIONS[e.kind].items() if self._depth(t) >= left - 1]
            path.append(rng.choice(rels))
            e = self.by_name[e.facts[path[-1]]]
        path.append(rng.choice([*RELATIONS[e.kind], *ATTRIBUTES[e.kind]]))
        x, chain = start.name, [start]
        for rel in path[:-1]:
            x = PHRASES[rel].format(x=x)
            chain.append(self.by_name[chain[-1].facts[rel]])
        return {
            "prompt": QUESTIONS[path[-1]].format(x=x),
            "answer": chain[-1].facts[path[-1]],
            "hops": path,
            "start_entity": start.name,
            "gold_doc_ids": [c.id for c in chain],
        }


@functools.lru_cache(maxsize=8)
def build_world(seed: int = 0, size: int = 200) -> World:
    """The world for ``(seed, size)``, built once per process."""
    return World(seed, size)
