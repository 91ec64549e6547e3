"""LogQL's keyword tables: functions, operators, precedence and which stage words are which."""

from __future__ import annotations

from typing import Final

LOG_RANGE_FUNCTIONS: Final = frozenset(
    {"count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time"}
)
"""Range functions over log lines (no `| unwrap`)."""
UNWRAP_FUNCTIONS: Final = frozenset(
    {
        "sum_over_time",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "first_over_time",
        "last_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "quantile_over_time",
        "rate_counter",
        "rate",
        "absent_over_time",
    }
)
"""Range functions that may read an unwrapped label."""
RANGE_FUNCTIONS: Final = LOG_RANGE_FUNCTIONS | UNWRAP_FUNCTIONS
GROUPING_RANGE_FUNCTIONS: Final = frozenset(
    {
        "avg_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "quantile_over_time",
        "max_over_time",
        "min_over_time",
        "first_over_time",
        "last_over_time",
    }
)
"""Range functions that take `by (…)` / `without (…)` themselves; the others refuse it."""
VECTOR_OPS: Final = frozenset(
    {
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "approx_topk",
        "sort",
        "sort_desc",
    }
)
PARAM_OPS: Final = frozenset({"topk", "bottomk", "approx_topk"})
"""Vector aggregations whose first argument is k."""
PRECEDENCE: Final = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    ">": 3,
    ">=": 3,
    "<": 3,
    "<=": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "^": 6,
}
COMPARISONS: Final = frozenset({"==", "!=", ">", ">=", "<", "<="})
SET_OPS: Final = frozenset({"and", "or", "unless"})
LINE_FILTERS: Final = frozenset({"|=", "!=", "|~", "!~", "|>", "!>"})
LABEL_OPS: Final = frozenset({"=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="})
STRING_OPS: Final = frozenset({"=", "!=", "=~", "!~"})
PARSER_WORDS: Final = frozenset({"json", "logfmt", "regexp", "pattern", "unpack"})
LOGFMT_FLAGS: Final = frozenset({"strict", "keep-empty"})
UNWRAP_CONVERSIONS: Final = frozenset({"bytes", "duration", "duration_seconds"})
