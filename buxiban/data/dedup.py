"""Exact and near-duplicate detection with MinHash + LSH, streaming, in about 250 bytes per example
(a 32-number signature, an 8-byte hash and a line number), whatever the length of the text.

Near-duplicates are what exact hashing misses: the same question with a typo fixed, a greeting
added, or a name changed. Similarity is the Jaccard index of word 3-grams (character 3-grams for
Chinese), estimated from 32 min-hashes.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from dataclasses import dataclass, field

import numpy as np

from ..text import CJK_CHARACTERS, normalize

PERMUTATIONS = 32
BANDS, ROWS = 8, 4  # candidate probability 1-(1-s^4)^8: 0.985 at s=0.8, 0.40 at s=0.5
BUCKET_ANCHORS = 50  # templated data can fill one bucket with thousands: compare each with 50 anchors only
_PRIME = (1 << 31) - 1
_rng = np.random.default_rng(20261121)  # fixed: signatures must be comparable across runs and files
_A = _rng.integers(1, _PRIME, PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, _PRIME, PERMUTATIONS, dtype=np.uint64)
_CJK = re.compile(rf"[{CJK_CHARACTERS}]")


def shingles(text: str) -> set[str]:
    words = normalize(text).split()
    if _CJK.search(text):  # Chinese has no spaces: characters play the part of words
        words = list("".join(words))
    if len(words) < 3:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}


def signature(text: str) -> np.ndarray:
    grams = shingles(text)
    if not grams:
        return np.full(PERMUTATIONS, _PRIME, dtype=np.uint32)
    hashed = np.fromiter(
        (int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "big") % _PRIME for g in grams),
        dtype=np.uint64,
        count=len(grams),
    )
    return ((_A[:, None] * hashed[None, :] + _B[:, None]) % _PRIME).min(axis=1).astype(np.uint32)


def exact_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(normalize(text).encode(), digest_size=8).digest(), "big")


@dataclass
class DuplicateIndex:
    """Add texts one at a time; ask for exact and near-duplicate pairs at the end. Each text has a
    line number and a group, the index of its file in `sources` (train 0, test 1 for leakage)."""

    threshold: float = 0.8
    sources: list[str] = field(default_factory=lambda: [""])
    lines: array = field(default_factory=lambda: array("q"))
    groups: bytearray = field(default_factory=bytearray)
    exact_first: dict[int, int] = field(default_factory=dict)
    exact_pairs: list[tuple[int, int]] = field(default_factory=list)
    _signatures: np.ndarray = field(default_factory=lambda: np.empty((1024, PERMUTATIONS), dtype=np.uint32))
    _owners: list[int] = field(default_factory=list)  # signature row -> text index (exact repeats get no row)

    def add(self, line: int, text: str, group: int = 0) -> int:
        index = len(self.lines)
        self.lines.append(line)
        self.groups.append(group)
        key = exact_key(text)
        first = self.exact_first.get(key)
        if first is not None:
            self.exact_pairs.append((first, index))
            return index
        self.exact_first[key] = index
        row = len(self._owners)
        if row == len(self._signatures):
            self._signatures = np.concatenate([self._signatures, np.empty_like(self._signatures)])
        self._signatures[row] = signature(text)
        self._owners.append(index)
        return index

    def near_pairs(self, across_groups: bool = False, limit: int = 10_000) -> list[tuple[int, int, float]]:
        """Pairs at or above the threshold that are not exact duplicates, at most `limit` of them."""
        rows = len(self._owners)
        sigs = self._signatures[:rows]
        owners = np.asarray(self._owners)
        groups = np.frombuffer(bytes(self.groups), dtype=np.uint8)
        seen: set[tuple[int, int]] = set()
        found: list[tuple[int, int, float]] = []
        for band in range(BANDS):
            block = sigs[:, band * ROWS : (band + 1) * ROWS].astype(np.uint64)
            keys = np.zeros(rows, dtype=np.uint64)
            for column in range(ROWS):  # mix the band's 4 values into one 64-bit key
                keys = keys * np.uint64(1_000_003) + block[:, column]
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
            ends = np.r_[starts[1:], rows]
            for start, end in zip(starts, ends):
                if end - start < 2:
                    continue
                members = order[start:end]
                anchors = members[:BUCKET_ANCHORS]
                scores = (sigs[anchors][:, None, :] == sigs[members][None, :, :]).mean(axis=2)
                for a, anchor in enumerate(anchors):
                    for m in np.flatnonzero(scores[a] >= self.threshold):
                        i, j = sorted((int(owners[anchor]), int(owners[members[m]])))
                        if i == j or (i, j) in seen:
                            continue
                        if across_groups and groups[i] == groups[j]:
                            continue
                        seen.add((i, j))
                        found.append((i, j, float(scores[a, m])))
                        if len(found) >= limit:
                            return sorted(found)
        return sorted(found)

    def label(self, index: int) -> str:
        return f"{self.sources[self.groups[index]]}:{self.lines[index]}"

    def exact_pairs_across(self) -> list[tuple[int, int]]:
        return [(i, j) for i, j in self.exact_pairs if self.groups[i] != self.groups[j]]
