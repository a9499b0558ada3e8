"""Reads hint shapley's phi.parquet with pyarrow and prints what the Rust test checks (JSON):
the schema, row count, metadata, and the top neurons of every concept by phi."""
import json
import sys

import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1])
top = int(sys.argv[2])
rows = table.to_pylist()
by_concept = {}
for r in rows:
    by_concept.setdefault(r["concept_name"], []).append(r)
print(json.dumps({
    "columns": table.schema.names,
    "types": [str(t) for t in table.schema.types],
    "rows": table.num_rows,
    "metadata": {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()},
    "top": {name: [r["neuron"] for r in sorted(rs, key=lambda r: (-r["phi"], r["neuron"]))[:top]]
            for name, rs in by_concept.items()},
    "n_permutations": sorted({r["n_permutations"] for r in rows}),
    "stderr_finite": all(r["stderr"] == r["stderr"] for r in rows),
}))
