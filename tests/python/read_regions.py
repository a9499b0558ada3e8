"""Reads a region Parquet file with pyarrow alone and prints what a user would see, as JSON:

    read_regions.py FILE

{"fields": [{"name", "type", "nullable"}], "activation": {"value_type", "list_size"},
 "num_rows", "metadata": {key: value} (the file's key/value metadata minus ARROW:schema),
 "first_row": {column: value}, "sums": {column: sum}, "foreground_rows",
 "activation_row_weighted": the sum over rows of (row number + 1) × the row's activations
 (rows out of place or values in the wrong row change it), "row_groups",
 "activation_offset_index": whether every activation chunk has an offset index,
 "compression": the codecs of the file's column chunks, sorted, as pyarrow names them}

The Rust side (tests/tests/hint/regions_pyarrow.rs) compares this with what it wrote.
"""

import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    path = sys.argv[1]
    table = pq.read_table(path)
    parquet_meta = pq.read_metadata(path)
    file_meta = parquet_meta.metadata or {}
    metadata = {
        k.decode(): v.decode() for k, v in file_meta.items() if k != b"ARROW:schema"
    }
    activation_type = table.schema.field("activation").type
    assert pa.types.is_fixed_size_list(activation_type), activation_type
    activations = table.column("activation").combine_chunks().flatten()
    first_row = {
        name: column[0].as_py() if table.num_rows else None
        for name, column in zip(table.column_names, table.columns)
        if name != "activation"
    }
    # as_py() gives numpy float16 scalars for halffloat, which json cannot write.
    first_row["activation"] = (
        activations.slice(0, activation_type.list_size)
        .to_numpy(zero_copy_only=False)
        .astype(np.float64)
        .tolist()
    )
    sums = {
        name: int(pa.compute.sum(table.column(name)).as_py() or 0)
        for name in ["image_id", "label", "y", "x"]
    }
    sums["saliency"] = float(
        table.column("saliency").to_numpy().astype(np.float64).sum()
    )
    # Halffloat has no pyarrow sum kernel; numpy widens exactly.
    values = activations.to_numpy(zero_copy_only=False).astype(np.float64)
    sums["activation"] = float(values.sum())
    row_sums = values.reshape(table.num_rows, activation_type.list_size).sum(axis=1)
    row_weighted = float((row_sums * np.arange(1, table.num_rows + 1)).sum())
    # The last field, and the last leaf column: the same index in both.
    activation_column = table.schema.get_field_index("activation")
    out = {
        "fields": [
            {"name": f.name, "type": str(f.type), "nullable": f.nullable}
            for f in table.schema
        ],
        "activation": {
            "value_type": str(activation_type.value_type),
            "list_size": activation_type.list_size,
        },
        "num_rows": table.num_rows,
        "metadata": metadata,
        "first_row": first_row,
        "sums": sums,
        "foreground_rows": int(pa.compute.sum(table.column("foreground")).as_py() or 0),
        "activation_row_weighted": row_weighted,
        "row_groups": parquet_meta.num_row_groups,
        "activation_offset_index": all(
            parquet_meta.row_group(g).column(activation_column).has_offset_index
            for g in range(parquet_meta.num_row_groups)
        ),
        "compression": sorted({
            parquet_meta.row_group(g).column(c).compression
            for g in range(parquet_meta.num_row_groups)
            for c in range(parquet_meta.num_columns)
        }),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
