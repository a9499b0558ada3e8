"""Reads a region Parquet file with DuckDB and with polars, each computing in its own
engine, and prints as JSON what the Rust side checks:

    read_regions_elsewhere.py FILE

{"duckdb": {...}, "polars": {...}}, each {"num_rows", "activation_type" (the engine's
name for the column's type), "activation_row_weighted": the sum over rows of (row number
+ 1) × the row's activations, widened to f64 before summing (rows out of place or values
in the wrong row change it)}.

hint encodes the activation column's pages itself (`common/src/regions/activation_chunk.rs`);
pyarrow (`read_regions.py`) is one reader of them, these are two more with Parquet readers
of their own.
"""

import json
import sys

import duckdb
import polars as pl


def with_duckdb(path: str) -> dict:
    con = duckdb.connect()
    rows, kind = con.execute(
        "select count(*), any_value(typeof(activation)) from read_parquet(?)", [path]
    ).fetchone()
    (weighted,) = con.execute(
        "select sum((file_row_number + 1) * list_sum(activation::double[])) "
        "from read_parquet(?, file_row_number = true)",
        [path],
    ).fetchone()
    return {"num_rows": rows, "activation_type": kind, "activation_row_weighted": weighted}


def with_polars(path: str) -> dict:
    frame = pl.scan_parquet(path)
    width = frame.collect_schema()["activation"].size
    out = (
        frame.with_row_index("row", offset=1)
        .select(
            pl.len().alias("rows"),
            (
                pl.col("row").cast(pl.Float64)
                * pl.col("activation").cast(pl.Array(pl.Float64, width)).arr.sum()
            )
            .sum()
            .alias("weighted"),
        )
        .collect()
    )
    return {
        "num_rows": out["rows"][0],
        "activation_type": str(frame.collect_schema()["activation"]),
        "activation_row_weighted": out["weighted"][0],
    }


def main() -> None:
    path = sys.argv[1]
    json.dump({"duckdb": with_duckdb(path), "polars": with_polars(path)}, sys.stdout)


if __name__ == "__main__":
    main()
