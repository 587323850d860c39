"""Wu-Palmer semantic similarity between ImageNet classes, on WordNet 3.0 nouns.

The paper (Feng & Cai, Table I, Fig. 3 and Appendix A) measures how wrong a
misclassification is by the Wu-Palmer similarity between the WordNet synsets of the
true and the predicted ImageNet class: warplane vs airliner 0.88, catamaran vs safety
pin 0.50. The paper used NLTK; this module reproduces NLTK's default
``Synset.wup_similarity`` for nouns exactly, without depending on NLTK, by reading
WordNet's own database file ``data.noun`` (format in ``wndb(5)``) and, for NLTK's
synset names (which break ties between subsumers), ``index.noun``.

WordNet 3.0 is read from :data:`DEFAULT_WORDNET_DIR` (Debian package ``wordnet-base``)
or from the directory named by the ``ADVQA_WORDNET_DIR`` environment variable.

ImageNet class index → WordNet 3.0 noun: ``data/imagenet_wnids.txt`` holds the 1000
ImageNet-1k wnids (``n`` + the 8-digit WordNet 3.0 byte offset in ``data.noun``) in
class-index order (the sorted wnids, the order of torchvision's and timm's models). It
is ``timm/data/_info/imagenet_synsets.txt`` from timm 1.0.31 (Apache-2.0).

Exact definition (NLTK 3.x ``Synset.wup_similarity(other)``, defaults
``simulate_root=True`` — which adds no fake root for WordNet 3.0 nouns, since they all
descend from ``entity.n.01`` — and ``use_min_depth=True`` for the subsumer). Hypernym
edges are the ``@`` (hypernym) and ``@i`` (instance hypernym) pointers.

* ``min_depth(s)`` / ``max_depth(s)``: the number of edges on the shortest / longest
  hypernym path from ``s`` to a root (0 for ``entity.n.01``).
* ``dist(s, t)``: the shortest-path distance of NLTK's ``shortest_path_distance``:
  0 if ``s == t``, else the minimum over synsets ``c`` that are (reflexive) ancestors of
  both, of ``d(s, c) + d(t, c)``, with ``d`` the fewest hypernym edges from one up to
  the other.
* The lowest common subsumers of ``a`` and ``b`` are the common (reflexive) ancestors
  with the greatest ``min_depth``; the subsumer ``L`` is ``a`` itself if it is one of
  them, else the first of them sorted by NLTK synset name (``lemma.n.NN``).
* With ``D = max_depth(L) + 1``::

      wup(a, b) = 2 D / ((dist(a, L) + D) + (dist(b, L) + D))

  The value lies in (0, 1]. As in NLTK, a synset compared with itself scores below 1
  when one of its ancestors has a greater ``min_depth`` than the synset itself (it has a
  short and a long path to the root): e.g. ``closer.n.01`` 0.75, and 107 of the 1000
  ImageNet classes, such as every dog breed (``chihuahua.n.03`` 0.8125) and warplane
  (0.9167). This module keeps that behaviour, to match the paper's NLTK numbers.
"""

from __future__ import annotations

import functools
import operator
import os
from collections import deque
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = [
    "DEFAULT_WORDNET_DIR",
    "N_CLASSES",
    "WORDNET_DIR_ENV",
    "ImageNetSynset",
    "WordNetNotFoundError",
    "imagenet_wnids",
    "noun_wup_similarity",
    "synset_of",
    "wordnet_dir",
    "wup_similarity",
]

#: Where Debian's ``wordnet-base`` package puts the WordNet 3.0 database.
DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
#: Environment variable naming another WordNet 3.0 ``dict`` directory.
WORDNET_DIR_ENV = "ADVQA_WORDNET_DIR"
#: Number of ImageNet-1k classes.
N_CLASSES = 1000

_HYPERNYM_POINTERS = frozenset({"@", "@i"})


class WordNetNotFoundError(FileNotFoundError):
    """The WordNet 3.0 database files are not where they were looked for."""


@dataclass(frozen=True)
class ImageNetSynset:
    """The WordNet 3.0 noun synset of one ImageNet class."""

    index: int  #: ImageNet class index, 0–999.
    wnid: str  #: ImageNet id, ``"n"`` + the 8-digit offset.
    offset: int  #: Byte offset of the synset in ``data.noun``.
    lemmas: tuple[str, ...]  #: Lemma names, as in WordNet (``"military_plane"``).
    name: str  #: NLTK-style synset name, ``"warplane.n.01"``.


def wordnet_dir() -> Path:
    """The WordNet directory: ``$ADVQA_WORDNET_DIR`` if set, else ``/usr/share/wordnet``."""
    return Path(os.environ.get(WORDNET_DIR_ENV) or DEFAULT_WORDNET_DIR)


def _wordnet_file(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise WordNetNotFoundError(
            f"WordNet 3.0 file {path} not found. Install the Debian package "
            f"'wordnet-base' (apt-get install wordnet-base, which provides "
            f"{DEFAULT_WORDNET_DIR}), or set {WORDNET_DIR_ENV} to a directory holding "
            f"WordNet 3.0's data.noun and index.noun."
        )
    return path


class _NounGraph:
    """Noun synsets of ``data.noun``: lemmas and hypernym (``@``, ``@i``) edges."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lemmas: dict[int, tuple[str, ...]] = {}
        self.hypernyms: dict[int, tuple[int, ...]] = {}
        with _wordnet_file(directory, "data.noun").open(encoding="utf-8") as fp:
            for line in fp:
                if line.startswith(" "):  # licence header
                    continue
                fields = line.split(" | ", 1)[0].split()
                offset = int(fields[0])
                # fields[1]: lex_filenum, fields[2]: ss_type, fields[3]: w_cnt (hex)
                w_cnt = int(fields[3], 16)
                words = tuple(fields[4 + 2 * i] for i in range(w_cnt))  # word, lex_id
                pos = 4 + 2 * w_cnt
                p_cnt = int(fields[pos])
                hypernyms = []
                for i in range(p_cnt):
                    symbol, target, target_pos, _source_target = fields[
                        pos + 1 + 4 * i : pos + 5 + 4 * i
                    ]
                    if symbol in _HYPERNYM_POINTERS and target_pos == "n":
                        hypernyms.append(int(target))
                self.lemmas[offset] = words
                self.hypernyms[offset] = tuple(hypernyms)
        if not self.lemmas:
            raise WordNetNotFoundError(f"{directory / 'data.noun'} holds no synsets")
        self._min_depth: dict[int, int] = {}
        self._max_depth: dict[int, int] = {}

    def check(self, offset: int) -> None:
        if offset not in self.lemmas:
            raise KeyError(f"no noun synset at offset {offset:08d} in {self.directory}")

    def _depth(self, offset: int, memo: dict[int, int], pick) -> int:
        # Iterative post-order so no recursion limit applies.
        stack = [offset]
        while stack:
            node = stack[-1]
            if node in memo:
                stack.pop()
                continue
            pending = [h for h in self.hypernyms[node] if h not in memo]
            if pending:
                if len(stack) > len(self.lemmas):
                    raise ValueError(f"hypernym cycle at offset {node:08d}")
                stack.extend(pending)
                continue
            parents = self.hypernyms[node]
            memo[node] = 1 + pick(memo[h] for h in parents) if parents else 0
            stack.pop()
        return memo[offset]

    def min_depth(self, offset: int) -> int:
        return self._depth(offset, self._min_depth, min)

    def max_depth(self, offset: int) -> int:
        return self._depth(offset, self._max_depth, max)

    def up_distances(self, offset: int) -> dict[int, int]:
        """Fewest hypernym edges from ``offset`` to each of its reflexive ancestors."""
        dist: dict[int, int] = {}
        queue = deque([(offset, 0)])
        while queue:
            node, d = queue.popleft()
            if node in dist:
                continue
            dist[node] = d
            queue.extend((h, d + 1) for h in self.hypernyms[node])
        return dist

    def name(self, offset: int) -> str:
        """NLTK's synset name: first lemma, lower-cased, ``.n.``, its sense number."""
        lemma = self.lemmas[offset][0].lower()
        senses = _noun_index(str(self.directory)).get(lemma, ())
        if offset not in senses:
            raise KeyError(f"index.noun has no sense of {lemma!r} at offset {offset:08d}")
        return f"{lemma}.n.{senses.index(offset) + 1:02d}"


@functools.lru_cache(maxsize=4)
def _noun_graph(directory: str) -> _NounGraph:
    return _NounGraph(Path(directory))


@functools.lru_cache(maxsize=4)
def _noun_index(directory: str) -> dict[str, tuple[int, ...]]:
    """``index.noun``: lemma → synset offsets in sense-number order."""
    senses: dict[str, tuple[int, ...]] = {}
    with _wordnet_file(Path(directory), "index.noun").open(encoding="utf-8") as fp:
        for line in fp:
            if line.startswith(" "):
                continue
            fields = line.split()
            synset_cnt = int(fields[2])
            p_cnt = int(fields[3])
            # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt offsets
            senses[fields[0]] = tuple(int(x) for x in fields[6 + p_cnt : 6 + p_cnt + synset_cnt])
    return senses


def _graph() -> _NounGraph:
    return _noun_graph(str(wordnet_dir()))


def noun_wup_similarity(offset_a: int, offset_b: int) -> float:
    """Wu-Palmer similarity of two WordNet 3.0 noun synsets given by ``data.noun`` offset.

    Equals NLTK's ``wn.synset_from_pos_and_offset("n", offset_a).wup_similarity(
    wn.synset_from_pos_and_offset("n", offset_b))``; see the module docstring for the
    formula.
    """
    graph = _graph()
    graph.check(offset_a)
    graph.check(offset_b)
    dist_a = graph.up_distances(offset_a)
    dist_b = graph.up_distances(offset_b)
    common = dist_a.keys() & dist_b.keys()
    if not common:  # cannot happen in WordNet 3.0 (every noun descends from entity.n.01)
        raise ValueError(f"synsets {offset_a:08d} and {offset_b:08d} share no hypernym")
    deepest = max(graph.min_depth(s) for s in common)
    subsumers = [s for s in common if graph.min_depth(s) == deepest]
    if offset_a in subsumers:
        subsumer = offset_a
    elif len(subsumers) == 1:
        subsumer = subsumers[0]
    else:
        subsumer = min(subsumers, key=graph.name)
    depth = graph.max_depth(subsumer) + 1
    dist_l = graph.up_distances(subsumer)

    def path_length(dist_x: dict[int, int]) -> int:
        # NLTK's shortest_path_distance(x, subsumer); 0 when x is the subsumer.
        return min(d + dist_l[c] for c, d in dist_x.items() if c in dist_l)

    len_a = path_length(dist_a) + depth
    len_b = path_length(dist_b) + depth
    return 2.0 * depth / (len_a + len_b)


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order."""
    text = resources.files("advqa.detect").joinpath("data/imagenet_wnids.txt").read_text(
        encoding="ascii"
    )
    wnids = tuple(text.split())
    if len(wnids) != N_CLASSES:
        raise RuntimeError(f"imagenet_wnids.txt has {len(wnids)} wnids, not {N_CLASSES}")
    return wnids


def _class_index(index: object) -> int:
    if isinstance(index, bool):
        raise TypeError(f"ImageNet class index must be an integer, not {index!r}")
    try:
        value = operator.index(index)  # int, numpy integers, 0-d integer tensors
    except TypeError:
        raise TypeError(f"ImageNet class index must be an integer, not {index!r}") from None
    if not 0 <= value < N_CLASSES:
        raise ValueError(f"ImageNet class index {value} is outside 0–{N_CLASSES - 1}")
    return value


def _offset(index: object) -> int:
    return int(imagenet_wnids()[_class_index(index)][1:])


def synset_of(index: int) -> ImageNetSynset:
    """The WordNet 3.0 noun synset of ImageNet class ``index`` (0–999)."""
    value = _class_index(index)
    offset = _offset(value)
    graph = _graph()
    graph.check(offset)
    return ImageNetSynset(
        index=value,
        wnid=imagenet_wnids()[value],
        offset=offset,
        lemmas=graph.lemmas[offset],
        name=graph.name(offset),
    )


def wup_similarity(a: int, b: int) -> float:
    """Wu-Palmer similarity of ImageNet classes ``a`` and ``b`` (indices 0–999).

    NLTK's default ``Synset.wup_similarity`` on their WordNet 3.0 noun synsets::

        wup(a, b) = 2 D / ((dist(a, L) + D) + (dist(b, L) + D)),  D = max_depth(L) + 1

    with ``L`` the lowest common subsumer of greatest ``min_depth`` (``a`` itself if it
    is one, else the first by synset name) and ``dist`` the shortest hypernym-path
    distance (module docstring). E.g. warplane (895) vs airliner (404) is 0.88 (to two
    places), as in the paper's Appendix A.
    """
    return noun_wup_similarity(_offset(a), _offset(b))
