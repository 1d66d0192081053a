"""Runs one SQL query with DuckDB (a Parquet reader slate did not write) over the audit sink's
Hive-partitioned tree and prints each result row as a JSON line {column: value}.

The tree is available as the view `audit`:
    read_parquet('DIR/**/*.parquet', hive_partitioning = true)

usage: audit_query.py DIR SQL
exit 3 when DIR holds no Parquet file yet.
"""
import glob
import json
import os
import sys

import duckdb


def main() -> int:
    root, sql = sys.argv[1], sys.argv[2]
    pattern = os.path.join(root, "**", "*.parquet")
    if not glob.glob(pattern, recursive=True):
        print(f"no parquet file under {root}", file=sys.stderr)
        return 3
    con = duckdb.connect()
    quoted = pattern.replace("'", "''")
    con.execute(f"CREATE VIEW audit AS SELECT * FROM read_parquet('{quoted}', hive_partitioning = true)")
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    for row in cur.fetchall():
        print(json.dumps(dict(zip(names, row)), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
