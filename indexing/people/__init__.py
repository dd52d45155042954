"""People: faces grouped into persons automatically, and the user's corrections.

``clustering`` is the k-NN graph and Chinese Whispers (numpy only);
``grouping`` runs it over an owner's library, incrementally or in full;
``corrections`` are the user's renames, merges, moves and "this is me";
``queries`` are what the pages and search read. Import from those modules.

Queued django-q tasks and Schedule rows store ``indexing.people.group_new_faces``
(``grouping.GROUP_TASK``), and the pipeline calls ``faces_indexed`` and
``run_finished`` through this package, so those three stay importable here.
"""

from .grouping import faces_indexed, group_new_faces, run_finished

__all__ = ["faces_indexed", "group_new_faces", "run_finished"]
