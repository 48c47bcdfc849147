"""Generate edge_cam/data/imagenet_groups.json and imagenet_coarse.json: ImageNet class groups
taken from WordNet.

Each group is every ImageNet-1k class (torchvision's class order) whose WordNet synset lies under
one or more chosen synsets, following hypernym ('@') and instance-hypernym ('@i') pointers. The
groups are WordNet's judgement, quirks included (e.g. "minivan" is both a car and a truck).

The coarse groups (imagenet_coarse.json) are the question a distilled student answers by default:
disjoint, each class in the first group of COARSE that holds it, the classes in none left out
(the student's "other"). Why coarse: on a real camera the teacher cannot keep its fine classes
apart from frame to frame (one dog is four breeds in a second; a person is "suit", "cardigan",
"miniskirt"), but it holds the group steady; benchmarks/question.py measures it.

Rerun (from the repository root, Debian/Ubuntu, with the full venv that has timm):

    apt-get install -y wordnet-base        # WordNet 3.0 in /usr/share/wordnet
    .venv/bin/python scripts/imagenet_groups.py

The output is deterministic (groups and ids sorted, one group per line); `--check` exits 1 when
the shipped file differs from what the script generates.
"""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys

log = logging.getLogger("imagenet_groups")

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "edge_cam" / "data" / "imagenet_groups.json"
WORDNET = pathlib.Path("/usr/share/wordnet/data.noun")

# group name → the WordNet 3.0 noun synsets (wnid = "n" + offset) whose ImageNet descendants it holds.
GROUPS: dict[str, tuple[str, ...]] = {
    # animals
    "animal": ("n00015388",),  # animal, animate being, beast
    "mammal": ("n01861778",),
    "dog": ("n02084071",),  # dog, domestic dog: the 118 breeds (not wolves, foxes)
    "cat": ("n02121808",),  # domestic cat: tabby, tiger cat, Persian, Siamese, Egyptian
    "feline": ("n02120997",),  # cats and big cats (lion, tiger, leopard, ...)
    "bear": ("n02131653",),
    "primate": ("n02469914",),  # apes, monkeys, lemurs
    "ungulate": ("n02370806",),  # hoofed mammals: horse, zebra, ox, sheep, camel, ...
    "bird": ("n01503061",),
    "fish": ("n02512053",),
    "reptile": ("n01661091",),
    "snake": ("n01726692",),
    "insect": ("n02159955",),
    "spider": ("n01772222",),
    # vehicles
    "car": ("n02958343",),  # car, auto, automobile: sports car, cab, jeep, limousine, ambulance, ...
    "truck": ("n04490091",),  # pickup, trailer truck, fire engine, tow truck, ...
    "bus": ("n02924116",),  # minibus, school bus, trolleybus
    # WordNet files buses under public transport, not motor vehicle: both, for a road camera.
    "vehicle": ("n03791235", "n02924116"),
    "bicycle": ("n02834778",),
    "boat": ("n04530566",),  # vessel, watercraft: boats and ships
    "aircraft": ("n02686568",),
    # objects
    "bottle": ("n02876657",),  # water, beer, wine, pop, pill bottles and jugs
    "food": ("n00021265", "n07555863"),  # food/nutrient and solid food (WordNet's own: includes menu, plate)
    "fruit": ("n07705931",),  # edible fruit (botanical "fruit" would add corn, acorn, rapeseed)
    "vegetable": ("n07707451",),
    "musical_instrument": ("n03800933",),
    "furniture": ("n03405725",),
    "telephone": ("n04401088",),
    # ImageNet has no "person" class; these three (ballplayer, groom, scuba diver) are all it has.
    "person": ("n00007846",),
    # What a camera's top-1 says when it sees a person: "suit", "jersey", "lab coat", "kimono", ...
    "clothing": ("n03051540",),  # clothing, article of clothing, vesture, wear
}

# The coarse question, first group first: a class under several goes to the first (a dog is not
# counted again as an animal). "person" is a person or what people wear.
COARSE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("person", ("person", "clothing")),
    ("dog", ("dog",)),
    ("cat", ("cat",)),
    ("bird", ("bird",)),
    ("animal", ("animal",)),
    ("vehicle", ("vehicle", "bicycle")),
    ("boat", ("boat",)),
    ("aircraft", ("aircraft",)),
    ("bottle", ("bottle",)),
    ("food", ("food", "fruit", "vegetable")),
    ("furniture", ("furniture",)),
)
COARSE_OUT = OUT.with_name("imagenet_coarse.json")


def read_wordnet(path: pathlib.Path) -> dict[str, list[str]]:
    """wnid → its hypernyms' wnids, from WordNet's data.noun (lexicographer database format:
    offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt [ptr_symbol offset pos source/target]... | gloss)."""
    parents: dict[str, list[str]] = {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):  # the license header
                continue
            fields = line.split(" | ")[0].split()
            n_words = int(fields[3], 16)
            i = 4 + 2 * n_words
            n_ptrs = int(fields[i])
            ptrs = [fields[i + 1 + 4 * k: i + 5 + 4 * k] for k in range(n_ptrs)]
            parents["n" + fields[0]] = ["n" + off for sym, off, pos, _ in ptrs if sym in ("@", "@i") and pos == "n"]
    return parents


def ancestors(wnid: str, parents: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [wnid]
    while todo:
        for p in parents[todo.pop()]:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in class order, as timm ships them (torchvision's order too)."""
    import timm.data  # only here: the generator runs in the full venv
    path = pathlib.Path(timm.data.__file__).parent / "_info" / "imagenet_synsets.txt"
    wnids = path.read_text().split()
    if len(wnids) != 1000:
        raise SystemExit(f"{path} has {len(wnids)} synsets, expected 1000")
    return wnids


def build(parents: dict[str, list[str]], wnids: list[str]) -> dict[str, list[int]]:
    under = [ancestors(w, parents) | {w} for w in wnids]
    groups = {}
    for name, synsets in sorted(GROUPS.items()):
        missing = [s for s in synsets if s not in parents]
        if missing:
            raise SystemExit(f"group {name}: synsets {missing} are not in WordNet")
        ids = sorted(i for i, a in enumerate(under) if a & set(synsets))
        if not ids:
            raise SystemExit(f"group {name}: no ImageNet class under {synsets}")
        groups[name] = ids
    return groups


def coarse(groups: dict[str, list[int]]) -> dict[str, list[int]]:
    """The disjoint coarse groups, in COARSE's order (see the module's doc)."""
    taken: set[int] = set()
    out = {}
    for name, members in COARSE:
        ids = sorted({i for g in members for i in groups[g]} - taken)
        taken.update(ids)
        out[name] = ids
    return out


def render(groups: dict[str, list[int]]) -> str:
    lines = [f"  {json.dumps(name)}: {json.dumps(ids)}" for name, ids in groups.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wordnet", type=pathlib.Path, default=WORDNET, help="WordNet 3.0 data.noun")
    p.add_argument("-o", "--output", type=pathlib.Path, default=OUT)
    p.add_argument("--check", action="store_true", help="compare with the output file instead of writing it")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.wordnet.is_file():
        raise SystemExit(f"{args.wordnet} is missing; apt-get install -y wordnet-base")
    groups = build(read_wordnet(args.wordnet), imagenet_wnids())
    outputs = {args.output: render(groups), args.output.with_name(COARSE_OUT.name): render(coarse(groups))}
    if args.check:
        stale = [p for p, text in outputs.items() if not (p.is_file() and p.read_text() == text)]
        for p in outputs:
            log.info("%s is %s", p, "out of date: rerun without --check" if p in stale else "up to date")
        return 1 if stale else 0
    for p, text in outputs.items():
        p.write_text(text)
    log.info("wrote %d groups to %s and %d coarse groups to %s", len(GROUPS), args.output, len(COARSE),
             args.output.with_name(COARSE_OUT.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
