"""The one copy figure: edited copies of held-out images, searched among the collection.

The held-out copies that choose a training run's published epoch (validation images among
training images) and `fext evaluate`'s copy detection (test images among the collection) are
both `copy_test`, with the same edits and the same kind of database, so the app shows one copy
figure, not two that disagree. Where the collection already holds copies of a copied image (an
identical file, or an edited copy its pixels confirm), finding one of them first is a success too:
for its user the question "where else is this picture?" has more than one right answer. Each
copy's first result is the one search would show first: among the features' first VERIFY, the
first whose pixels show the copy's picture (`fext.search.confirmed_first`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .index import l2_normalize
from .progress import ProgressFn

COPY_DATABASE = 2000  # images the copies are searched among (their sources included), at most
COPIES_PER_IMAGE = 20  # copies of one image, at most: copies of one image succeed or fail
# together, so more of a few images say no more (`recall_interval`) and only cost pixel checks


@dataclass
class CopyTest:
    """Edited copies of held-out images and the images they are searched among."""
    db_rows: np.ndarray  # collection rows searched among: the sources first, then others
    truth: np.ndarray  # each copy's source, as a position in db_rows
    copies: np.ndarray  # uint8 model inputs, loaded as a query is
    sources: str  # which images were copied, for the report
    sha1: np.ndarray  # of each db row's file
    sizes: np.ndarray  # (width, height) of each db row's file, to cut its padding off
    fit: str
    paths: list | None = None  # each db row's file, for the pixel check's second look
    copy_sizes: np.ndarray | None = None  # (width, height) of each edited copy
    copy_seeds: np.ndarray | None = None  # each copy's edit seed, to make it again at CLOSER px
    known: dict = field(default_factory=dict)  # (source, found) positions -> one picture
    confirmed: dict = field(default_factory=dict)  # (copy, found) -> the search's pixel check
    hashes: tuple | None = None  # perceptual hashes of the copies and of db_rows' images

    def verified(self, images: np.ndarray, top: np.ndarray) -> np.ndarray:
        """Each copy's results `top` (positions in db_rows, the features' order) as search
        orders them: the first of them whose pixels show the copy's picture moved to the
        front (`confirmed_first`). Each (copy, result) pair is checked once for the life of
        the test (a training run asks every epoch). A copy none of whose results could count
        as found (`countable`) keeps the features' order unchecked: no order of them changes
        a figure, so no pixel check is spent on it."""
        from .agreement import one_thread
        from .duplicates import hashes_of, perceptual_hashes
        from .search import confirmed_first

        if self.hashes is None:  # the copies' and the database's, once for the test's life
            self.hashes = perceptual_hashes(self.copies), hashes_of(images, self.db_rows)
        out = np.array(top, copy=True)
        countable = self.countable(top)
        with one_thread():
            for i in np.flatnonzero(countable.any(axis=1)):
                row = top[i]
                def same(j: int, i=i, row=row) -> bool:
                    pair = (i, int(row[j]))
                    if pair not in self.confirmed:
                        self.confirmed[pair] = self._shows_copy(images, *pair)
                    return self.confirmed[pair]

                out[i] = row[confirmed_first(len(row), same, every=False)[0]]
        return out

    def countable(self, top: np.ndarray) -> np.ndarray:
        """Whether each result in `top` (positions in db_rows, a row per copy) could count as
        its copy's find (`hits`): the source, a file of the same content, or an image whose
        perceptual hash is within MAX_HASH_DISTANCE of the source's, which `_same` needs
        before any pixel check. Needs the hashes `verified` computes."""
        from .duplicates import MAX_HASH_DISTANCE, hash_distance

        top = np.asarray(top, np.int64)
        source = self.truth[:len(top), None]  # row i: copy i's results
        return ((top == source) | (self.sha1[top] == self.sha1[source])
                | (hash_distance(self.hashes[1][top], self.hashes[1][source]) <= MAX_HASH_DISTANCE))

    def _shows_copy(self, images: np.ndarray, i: int, found: int) -> bool:
        """Whether db row `found` shows copy `i`'s picture (`same_picture`), the copy made
        again from its seed for the second look."""
        from .agreement import closer_content
        from .duplicates import same_picture
        from .edits import closer_copy

        if self.copy_sizes is None:
            return False
        stored = self.sizes[found]
        closer = None
        if self.paths is not None and self.copy_seeds is not None:
            def closer():
                return (closer_copy(self.paths[self.truth[i]], self.copies.shape[1],
                                    int(self.copy_seeds[i]), self.fit),
                        closer_content(self.paths[found], *map(int, stored), self.fit))
        return same_picture(self.copies[i], images[self.db_rows[found]],
                            [self.copy_sizes[i], stored], self.fit, closer,
                            (self.hashes[0][i], self.hashes[1][found]))

    def hits(self, images: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Whether each copy's search found (`found`: positions in db_rows) its source, or
        another copy of it already in the collection: an identical file, or an image that
        duplicate groups would confirm as the source's copy where pixels decide (perceptual
        hashes within MAX_HASH_DISTANCE, then the aligned pixels agree: `fext.agreement`).
        Only misses are checked, each pair once for the life of the test (a training run asks
        every epoch); the hashes turn most pairs away before the slower pixel check. On the
        zoo, 1,176 such finds of every method were all planted copies (docs/QUALITY.md)."""
        from .agreement import one_thread

        hits = np.asarray(found) == self.truth
        with one_thread():
            for i in np.flatnonzero(~hits):
                pair = (int(self.truth[i]), int(found[i]))
                if pair not in self.known:
                    self.known[pair] = self._same(images, *pair)
                hits[i] = self.known[pair]
        return hits

    def _same(self, images: np.ndarray, a: int, b: int) -> bool:
        """Whether db rows `a` and `b` hold one picture: the same file content, or
        `same_picture` (their files read again for the second look, as duplicate groups do)."""
        from .agreement import closer_content
        from .duplicates import same_picture

        if self.sha1[a] == self.sha1[b]:
            return True
        closer = (None if self.paths is None else
                  lambda: tuple(closer_content(self.paths[i], *map(int, self.sizes[i]), self.fit)
                                for i in (a, b)))
        return same_picture(images[self.db_rows[a]], images[self.db_rows[b]],
                            self.sizes[[a, b]], self.fit, closer,
                            None if self.hashes is None else self.hashes[1][[a, b]])


def copy_test(coll, sources, others, fit: str, seed: int, count: int,
              progress: ProgressFn | None = None, name: str = "") -> CopyTest:
    """`count` edited copies of a seeded sample of `sources` (an items frame; a small one is
    edited several times over, each copy anew, up to COPIES_PER_IMAGE times), searched among
    those sources and a seeded sample of `others` up to COPY_DATABASE images in all.

    The one copy figure: the held-out copies that choose the published epoch (validation
    images among training images) and `fext evaluate`'s copy detection (test images among the
    collection) are this test, with the same edits (fext.edits: the everyday edits of a photo,
    on a working copy at up to 4x the input size, loaded as a query is) and the same kind of
    database. Before, training searched light training views among 4,096 images and evaluate
    the everyday edits among 2,000: on the demo digits one said 91 %, the other 0.138."""
    from .edits import copy_queries

    count = min(count, COPIES_PER_IMAGE * len(sources))
    if progress:
        progress("copies", 0, count)
    picked, copies, sizes, seeds = copy_queries(coll, sources, fit, seed, count, progress,
                                                repeat=True)
    source_rows, truth = np.unique(sources["row"].to_numpy()[picked], return_inverse=True)
    rest = np.setdiff1d(others["row"].to_numpy(), source_rows)
    rng = np.random.default_rng(seed)
    rest = np.sort(rng.choice(rest, min(len(rest), max(0, COPY_DATABASE - len(source_rows))),
                              replace=False))
    db_rows = np.concatenate([source_rows, rest]).astype(np.int64)
    files = pd.concat([frame[frame["row"].isin(db_rows)] for frame in (sources, others)])
    files = files.drop_duplicates("row").set_index("row").loc[db_rows]
    return CopyTest(db_rows, truth.astype(np.int64), copies, name, files["sha1"].to_numpy(),
                    files[["width", "height"]].to_numpy(), fit,
                    [coll.root / p for p in files["path"]], sizes, seeds)


def validation_test(coll, train, fit: str, progress: ProgressFn | None = None) -> CopyTest:
    """The copy test of the validation split (`train`: the run's TrainConfig, whose seed and
    `held_out_copies` it takes): what training measures after each epoch to choose the
    published one, and what `fext evaluate` repeats on the published features."""
    return copy_test(coll, coll.items("val"), coll.items(), fit, train.seed,
                     train.held_out_copies, progress, "val split")


def recall_interval(hits: np.ndarray, truth: np.ndarray, level: float = 0.95,
                    rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A bootstrap interval of recall@1 that resamples the copied images, not the copies: the
    copies of one image tend to succeed or fail together, so 256 copies of a 45-image split
    say no more than 45 images do. Two splits' figures that differ within their intervals
    differ by chance (which images landed in which split)."""
    if not len(truth):
        return (0.0, 0.0)
    _, per = np.unique(truth, return_inverse=True)
    found, count = np.bincount(per, weights=hits), np.bincount(per)
    picks = np.random.default_rng(seed).integers(0, len(count), (rounds, len(count)))
    recall = found[picks].sum(axis=1) / count[picks].sum(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(recall, tail)), float(np.quantile(recall, 1 - tail))


def interval(figure: dict) -> str:
    """A figure's 95 % interval as 'lo-hi' (evaluations from before intervals: blank)."""
    lo_hi = figure.get("interval")
    return f"{lo_hi[0]:.3f}-{lo_hi[1]:.3f}" if lo_hi else ""


def search_hits(test: CopyTest, images: np.ndarray, db: np.ndarray,
                queries: np.ndarray) -> np.ndarray:
    """Whether each copy's first result, as search orders them (cosine, then the pixel check:
    `CopyTest.verified`), is its source (or a copy of it: `CopyTest.hits`); `db`: the features
    of `test.db_rows`, `queries` of its copies."""
    from .search import VERIFY

    top = test.verified(images, cosine_top(db, queries, k=VERIFY))
    return test.hits(images, top[:, 0])


def copy_recall(test: CopyTest, images: np.ndarray, db: np.ndarray, queries: np.ndarray) -> float:
    """Recall@1 of `search_hits`: the share of copies whose first result is their source."""
    return float(search_hits(test, images, db, queries).mean()) if len(test.truth) else 0.0


def published_hits(test: CopyTest, images: np.ndarray, parts, query) -> np.ndarray:
    """`search_hits` with a published model's features as a user's search has them: the
    database encoded as extraction encodes it (`parts`: `fext.encoding.extraction_parts`), the
    copies as a query is (`query`: `fext.encoding.query_encoder`), the read-out included.

    What `fext evaluate` repeats on the validation split and what training records as the
    published model's figure: the epochs are measured on the weights being trained, before
    the read-out that publishing fits, and the read-out moves the figure (on zoo seed 6 from
    0.234 to 0.180 on the digits, 0.977 to 0.949 on the photos: docs/QUALITY.md)."""
    from .encoding import encode_all, encode_images

    db = encode_all(parts, images, test.db_rows, 256, reconstruct=False)[0]
    return search_hits(test, images, db, encode_images(query, test.copies, 256))


def held_out_sources(coll):
    """(sources, others, name): the images `fext evaluate` copies: the test split, never
    trained on nor used to choose the epoch (the validation split, or the whole collection,
    where a split is empty), and the collection they are searched in."""
    items = coll.items()
    for split in ("test", "val"):
        part = coll.items(split)
        if len(part):
            return part, items, f"{split} split"
    return items, items, "every image (no held-out split)"


def cosine_top(db: np.ndarray, queries: np.ndarray, k: int = 5) -> np.ndarray:
    """Each query's `k` nearest rows of `db` by cosine, 256 queries at a time."""
    db, queries = l2_normalize(db), l2_normalize(queries)
    return np.concatenate([np.argsort(-(queries[i:i + 256] @ db.T), axis=1, kind="stable")[:, :k]
                           for i in range(0, len(queries), 256)])
