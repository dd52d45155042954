"""Chinese Whispers on a k-nearest-neighbour graph of face embeddings (numpy only, no database).

* Every face links to its ``NEIGHBOURS`` most similar faces whose similarity
  (the engines' 0-100 scale) is at least ``EDGE_SIMILARITY``, weighted by
  cosine. The k-NN search is a chunked matrix product with a threshold, never
  an n x n matrix in memory, so a large library fits in a worker.
* Chinese Whispers: each face in turn takes the label with the largest summed
  edge weight among its neighbours, until nothing changes. Rows outside the
  free ones keep their label and only vote: that is how new faces join an
  existing person and how the user's corrections are never undone.

Why the edge threshold is 93 and not the search default of 80: 80 is right for
"show me candidates" but merges strangers in a large library, while 93 sits in
the middle of the gap between same-person and different-person cosines on the
fixtures, which group perfectly anywhere in that gap and so bound the threshold
without picking it (``bench/people.py`` prints the sweep; figures in README).
"""

from __future__ import annotations

import numpy as np

from ..engines.local import cosine_from_similarity

EDGE_SIMILARITY = 93.0  # 0-100: two faces closer than this are linked
EDGE_COSINE = cosine_from_similarity(EDGE_SIMILARITY)
NEIGHBOURS = 20  # k of the k-NN graph
ITERATIONS = 30  # Chinese Whispers rounds at most (it settles well before)
BLOCK_BYTES = 64 * 1024 * 1024  # score block of the k-NN search


def knn(
    matrix: np.ndarray,
    rows: np.ndarray | None = None,
    k: int = NEIGHBOURS,
    min_cosine: float = EDGE_COSINE,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar rows of ``matrix`` to each of ``rows`` with cosine >= ``min_cosine``.

    Returns (neighbours, cosines), both ``len(rows) x k``, best first; missing
    neighbours are -1 with cosine 0. A row is never its own neighbour. Scores
    are computed a block of rows at a time (about ``block_bytes`` each), so
    memory stays bounded whatever the library size.
    """
    n = len(matrix)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    neighbours = np.full((len(rows), k), -1, dtype=np.int64)
    cosines = np.zeros((len(rows), k), dtype=np.float32)
    if not n or not len(rows) or k <= 0:
        return neighbours, cosines
    block = int(max(1, min(len(rows), block_bytes // (4 * n))))
    scores = np.empty((block, n), dtype=np.float32)
    transposed = matrix.T
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        out = scores[: len(chunk)]
        np.matmul(matrix[chunk], transposed, out=out)
        out[np.arange(len(chunk)), chunk] = -np.inf  # not itself
        # flatnonzero, not nonzero: 15x faster on a 2-D mask; row-major, so sorted by row.
        hit_row, hit_col = np.divmod(np.flatnonzero(out >= min_cosine), n)
        if not len(hit_row):
            continue
        hit_cos = out[hit_row, hit_col]
        counts = np.bincount(hit_row, minlength=len(chunk))
        rank = np.arange(len(hit_row)) - np.concatenate(([0], np.cumsum(counts)[:-1]))[hit_row]
        light = counts[hit_row] <= k
        if light.any():  # rows with at most k candidates keep them all, best first
            r, c, v = hit_row[light], hit_col[light], hit_cos[light]
            order = np.argsort(r + (1.0 - v.astype(np.float64)) / 4.0, kind="stable")  # (1-v)/4 < 1
            r, c, v = r[order], c[order], v[order]
            slot = rank[light]  # a sort within rows leaves each row's slots where they were
            neighbours[start + r, slot] = c
            cosines[start + r, slot] = v
        heavy = counts[hit_row] > k
        if heavy.any():
            # Rows in big groups: padded candidate tables and argpartition, O(candidates).
            # Rows are bucketed by candidate count (powers of two) so padding stays small.
            buckets = np.ceil(np.log2(counts[hit_row[heavy]])).astype(np.int64)
            for bucket in np.unique(buckets):
                pick = np.flatnonzero(heavy)[buckets == bucket]
                table_rows = np.unique(hit_row[pick])
                where = np.searchsorted(table_rows, hit_row[pick])
                table = np.full((len(table_rows), int(counts[table_rows].max())), -np.inf, dtype=np.float32)
                columns = np.zeros(table.shape, dtype=np.int64)
                table[where, rank[pick]] = hit_cos[pick]
                columns[where, rank[pick]] = hit_col[pick]
                top = np.argpartition(table, table.shape[1] - k, axis=1)[:, -k:]
                values = np.take_along_axis(table, top, axis=1)
                order = np.argsort(-values, axis=1, kind="stable")
                neighbours[start + table_rows] = np.take_along_axis(columns, np.take_along_axis(top, order, axis=1), axis=1)
                cosines[start + table_rows] = np.take_along_axis(values, order, axis=1)
    return neighbours, cosines


def chinese_whispers(
    labels: np.ndarray,
    rows: np.ndarray,
    neighbours: np.ndarray,
    weights: np.ndarray,
    iterations: int = ITERATIONS,
    seed: int = 0,
) -> np.ndarray:
    """Chinese Whispers (Biemann 2006) where only ``rows`` update their label.

    ``labels`` holds a label per matrix row (the other rows keep theirs and only
    vote); ``neighbours``/``weights`` are the k-NN lists of ``rows``. Each round
    visits the free rows in a random order, in batches of about 1/64 of them (a
    batch votes on the labels of the previous one, which keeps the result of the
    sequential algorithm at numpy speed), and each row takes the label with
    the largest summed weight among its neighbours. Stops when a round changes
    nothing. Returns the new labels (a copy); ties go to the smaller label, and
    the seed makes runs repeatable.
    """
    labels = labels.copy()
    rows = np.asarray(rows, dtype=np.int64)
    linked = neighbours[:, 0] >= 0
    local = np.flatnonzero(linked)  # positions in rows/neighbours
    if not len(local):
        return labels
    span = int(labels.max()) + 1
    batch = max(1, len(local) // 64)
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = 0
        order = rng.permutation(local)
        for start in range(0, len(order), batch):
            picked = order[start : start + batch]
            nbr = neighbours[picked]
            valid = nbr >= 0
            which = np.nonzero(valid)[0]  # position in the batch, per edge
            votes = labels[nbr[valid]]
            key = which.astype(np.int64) * span + votes
            unique, inverse = np.unique(key, return_inverse=True)
            totals = np.bincount(inverse, weights=weights[picked][valid])
            voter = unique // span
            # Per voter the heaviest label: sort by voter, then weight descending.
            best = np.lexsort((-totals, voter))
            first = best[np.r_[True, voter[best][1:] != voter[best][:-1]]]
            winners = unique[first] % span
            targets = rows[picked[voter[first]]]
            moved = labels[targets] != winners
            if moved.any():
                labels[targets[moved]] = winners[moved]
                changed += int(moved.sum())
        if not changed:
            break
    return labels


def cluster(matrix: np.ndarray, **kwargs) -> np.ndarray:
    """Labels for every row of ``matrix`` from scratch (benchmarks and tests)."""
    neighbours, cosines = knn(matrix, **{k: v for k, v in kwargs.items() if k in ("k", "min_cosine")})
    labels = np.arange(len(matrix), dtype=np.int64)
    return chinese_whispers(labels, np.arange(len(matrix)), neighbours, cosines)

