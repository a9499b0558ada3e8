"""Rows of a region directory and distinct (image_id, y, x) positions: `rows distinct`.

Used by the cluster tests: after workers are killed, every region must be there exactly once.
"""
import sys

import pyarrow.dataset as ds

table = ds.dataset(sys.argv[1], format="parquet").to_table(columns=["image_id", "y", "x"])
positions = set(zip(*(table.column(c).to_pylist() for c in ("image_id", "y", "x"))))
print(table.num_rows, len(positions))
