"""A region file's table as hint writes it (the schema the README documents), for the
benches' pyarrow writers. tests/python/write_regions.py stays a self-contained minimal
writer on purpose: it is the documented example for other tools."""
import pyarrow as pa


def region_table(image_id, label, y, x, saliency, foreground, values, value_type, d: int,
                 metadata: dict) -> pa.Table:
    """The columns in the schema's order; `values` holds the rows' activations flat (row
    major, `d` per row) as numpy of `value_type` (pa.float32() or pa.float16())."""
    fields = [
        pa.field("image_id", pa.uint64(), nullable=False),
        pa.field("label", pa.uint32(), nullable=False),
        pa.field("y", pa.uint16(), nullable=False),
        pa.field("x", pa.uint16(), nullable=False),
        pa.field("saliency", pa.float32(), nullable=False),
        pa.field("foreground", pa.bool_(), nullable=False),
        pa.field("activation", pa.list_(pa.field("item", value_type, nullable=False), d),
                 nullable=False),
    ]
    columns = [
        pa.array(image_id, pa.uint64()),
        pa.array(label, pa.uint32()),
        pa.array(y, pa.uint16()),
        pa.array(x, pa.uint16()),
        pa.array(saliency, pa.float32()),
        pa.array(foreground, pa.bool_()),
        pa.FixedSizeListArray.from_arrays(pa.array(values, value_type), d),
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata))
