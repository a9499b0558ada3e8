"""Writes a region Parquet file with pyarrow alone, following the README's schema, as another
tool would: every documented metadata key except `activation_type` (the column type says it).

    write_regions.py OUT f16|f32

Rows: 2 images × 3 positions on a 2×2 map, D = 4; activation[d] = image + position / 10 + d,
foreground where position == 0.
"""

import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    out, kind = sys.argv[1], sys.argv[2]
    value_type = pa.float16() if kind == "f16" else pa.float32()
    d = 4
    image_id, label, y, x, saliency, foreground, activation = [], [], [], [], [], [], []
    for image in range(2):
        for position in range(3):
            image_id.append(image)
            label.append(image)
            y.append(position // 2)
            x.append(position % 2)
            saliency.append(1.0 - position / 4)
            foreground.append(position == 0)
            activation.extend(image + position / 10 + k for k in range(d))
    values = pa.array(np.array(activation, dtype=np.float32)).cast(value_type)
    columns = [
        pa.array(image_id, pa.uint64()),
        pa.array(label, pa.uint32()),
        pa.array(y, pa.uint16()),
        pa.array(x, pa.uint16()),
        pa.array(saliency, pa.float32()),
        pa.array(foreground, pa.bool_()),
        pa.FixedSizeListArray.from_arrays(values, d),
    ]
    fields = [
        pa.field("image_id", pa.uint64(), nullable=False),
        pa.field("label", pa.uint32(), nullable=False),
        pa.field("y", pa.uint16(), nullable=False),
        pa.field("x", pa.uint16(), nullable=False),
        pa.field("saliency", pa.float32(), nullable=False),
        pa.field("foreground", pa.bool_(), nullable=False),
        pa.field(
            "activation",
            pa.list_(pa.field("item", value_type, nullable=False), d),
            nullable=False,
        ),
    ]
    metadata = {
        "model": "tiny_cnn",
        "layer": "features.4",
        "method": "gradient",
        "aggregation": "norm",
        "threshold": "0.5",
        "D": str(d),
        "H": "2",
        "W": "2",
        "labels": json.dumps(["cat", "dog"]),
    }
    table = pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata))
    pq.write_table(table, out)


if __name__ == "__main__":
    main()
