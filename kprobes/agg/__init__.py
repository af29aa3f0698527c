"""Aggregation: counts, histograms and latencies, pure (no I/O).

- :mod:`.model`     ``Bucket``, ``Row``, ``Aggregation`` (the shared result interface)
- :mod:`.buckets`   the kernel's ``.log2`` boundaries and linear buckets
- :mod:`.histfile`  the text of a tracefs ``hist`` file -> tables
- :mod:`.user`      the user-side aggregator over columns, entry/return pairing
- :mod:`.render`    ``@[key]: value`` lines and histogram bars
"""

from .buckets import Linear, log2_index, log2_range
from .model import Aggregation, Bucket, Row, merge_rows, sort_rows

__all__ = ["Aggregation", "Bucket", "Row", "Linear", "log2_index", "log2_range", "merge_rows",
           "sort_rows"]
