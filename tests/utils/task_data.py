"""Small synthetic examples of every task type, with a signal that even a tiny model learns.

Each function returns examples in the normalised form that the dataset parsers produce, so
tests can hand them to the trainer directly or write them out as an upload.
"""

import random

NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah"]
CITIES = ["Paris", "Lagos", "Quito", "Oslo", "Hanoi", "Perth"]
FILLER = ["the", "report", "said", "that", "after", "a", "long", "meeting", "today", "again"]
TOPIC_KEYWORDS = {"politics": "election", "sports": "football", "weather": "rain"}
NER_TAGS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


def filler(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(words))


def pair_examples(count: int, seed: int) -> list[dict]:
    """Pairs labelled "same" when both texts name the same city, else "different"."""
    rng = random.Random(seed)
    examples = []
    for index in range(count):
        city = rng.choice(CITIES)
        other = city if index % 2 else rng.choice([c for c in CITIES if c != city])
        examples.append(
            {
                "text": f"{filler(rng, 3)} {city} {filler(rng, 2)}",
                "text_pair": f"{filler(rng, 2)} {other}",
                "label": "same" if other == city else "different",
            }
        )
    return examples


def topic_examples(count: int, seed: int) -> list[dict]:
    """Texts that mention zero to two topics, each by one keyword."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        topics = sorted(rng.sample(sorted(TOPIC_KEYWORDS), rng.randint(0, 2)))
        words = [filler(rng, 3), *(TOPIC_KEYWORDS[t] for t in topics), filler(rng, 2)]
        examples.append({"text": " ".join(words), "labels": topics})
    return examples


def rating_examples(count: int, seed: int) -> list[dict]:
    """Texts whose target is ten times the number of times "great" occurs."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        great = rng.randint(0, 3)
        words = [filler(rng, 2), *(["great"] * great), filler(rng, 2)]
        examples.append({"text": " ".join(words), "target": 10.0 * great})
    return examples


def ner_examples(count: int, seed: int, max_filler: int = 30) -> list[dict]:
    """Sentences "... NAME visited CITY ..." with the name tagged PER and the city LOC."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        tokens = [*filler(rng, 2).split(), rng.choice(NAMES), "visited", rng.choice(CITIES)]
        tokens += filler(rng, rng.randint(1, max_filler)).split()
        tags = ["O"] * len(tokens)
        tags[2], tags[4] = "B-PER", "B-LOC"
        examples.append({"tokens": tokens, "tags": tags})
    return examples


def qa_examples(count: int, seed: int, max_filler: int = 40) -> list[dict]:
    """Questions "Where does NAME live?" answered by the city named in the context."""
    rng = random.Random(seed)
    examples = []
    for index in range(count):
        name, city = rng.choice(NAMES), rng.choice(CITIES)
        context = f"{filler(rng, rng.randint(2, max_filler))} {name} lives in {city} . "
        context += filler(rng, 3)
        start = context.index(f" in {city}") + 4
        examples.append(
            {
                "id": f"q{seed}-{index}",
                "question": f"Where does {name} live?",
                "context": context,
                "answers": [{"text": city, "answer_start": start}],
                "title": f"article {index % 6}",
            }
        )
    return examples
