"""How well a grouping matches true identities: shared by ``bench/people.py`` and ``tests/test_people.py``."""

from __future__ import annotations

from collections import Counter


def pairwise_scores(truth, predicted) -> tuple[float, float]:
    """Pairwise precision and recall of a grouping against true identities.

    A pair of faces is predicted together when both have the same label that is
    not None (None = unassigned), and truly together when their identities are
    equal. Counted from the contingency table, so a large library stays cheap.
    """

    def pairs(counts) -> int:
        return sum(c * (c - 1) // 2 for c in counts)

    truth, predicted = list(truth), list(predicted)
    together_true = pairs(Counter(truth).values())
    assigned = [(t, p) for t, p in zip(truth, predicted) if p is not None]
    together_pred = pairs(Counter(p for _, p in assigned).values())
    both = pairs(Counter(assigned).values())
    precision = both / together_pred if together_pred else 1.0
    recall = both / together_true if together_true else 1.0
    return precision, recall
