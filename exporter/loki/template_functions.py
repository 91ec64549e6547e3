"""The functions LogQL templates may call (Loki's, Sprig's, Go's builtins) and Go's printing."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote_plus, unquote_plus
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exporter.loki.lexer import parse_bytes, parse_duration
from exporter.loki.regex import LogRegex, RegexError, compile_logql


class TemplateError(ValueError):
    """A template function failed on the values it was given."""


def go_float(value: float) -> str:
    """A float as Go's %v prints it: shortest digits, exponent form from 1e+06 and below 1e-04."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    exp = len(text) + exponent - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:  # Go's %v: precision 6 decides when the digits are shortest
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exponent >= 0:
        return prefix + text + "0" * exponent
    point = len(text) + exponent
    if point <= 0:
        return prefix + "0." + "0" * -point + text
    return prefix + text[:point] + "." + text[point:]


def go_time(value: datetime) -> str:
    """Go's time.Time String(): `2006-01-02 15:04:05.999999999 -0700 MST`."""
    frac = f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""
    offset = value.strftime("%z") or "+0000"
    zone = value.tzname() or "UTC"
    return value.strftime("%Y-%m-%d %H:%M:%S") + f"{frac} {offset} {zone}"


def go_string(value: Any) -> str:
    """Any template value as text, the way Go's templates print it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if value is None:
        return "<no value>"
    if isinstance(value, datetime):
        return go_time(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_string(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    return str(value)


def truthy(value: Any) -> bool:
    """Go's notion of a true value: non-zero, non-empty, non-nil."""
    if isinstance(value, datetime):
        return True
    return bool(value)


def _int(value: Any) -> int:
    """Sprig's toInt64: numbers truncate, text parses, anything else is 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                return 0
            return int(number) if math.isfinite(number) else 0
    return 0


def _float(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


MAX_WIDTH: Final = 10_000
"""Padding and repetition stop here: one template must not make a line of gigabytes."""


def _width(value: Any) -> int:
    return max(min(_int(value), MAX_WIDTH), 0)


_GO_VERB: Final = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*)?)?([a-zA-Z%])")


def go_printf(fmt: str, *args: Any) -> str:
    """Go's fmt.Sprintf for the verbs templates use: %s %v %d %f %g %e %q %x %t %c %%."""
    out: list[str] = []
    pos = 0
    arg_i = 0
    for match in _GO_VERB.finditer(fmt):
        out.append(fmt[pos : match.start()])
        pos = match.end()
        flags, width, precision, verb = match.groups()
        if verb == "%":
            out.append("%")
            continue
        if arg_i >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[arg_i]
        arg_i += 1
        if int(width if width and width.isdigit() else 0) > MAX_WIDTH or (
            precision and precision.isdigit() and int(precision) > MAX_WIDTH
        ):
            out.append(f"%!{verb}(BADWIDTH)")
            continue
        spec = flags.replace("#", "") + (width or "")
        if precision is not None and verb in "feEgGs":
            spec += "." + (precision or "0")
        try:
            out.append(_format_one(arg, verb, spec, flags))
        except (ValueError, TypeError):
            out.append(f"%!{verb}({type(arg).__name__}={go_string(arg)})")
    out.append(fmt[pos:])
    if arg_i < len(args):
        extra = ", ".join(f"{type(a).__name__}={go_string(a)}" for a in args[arg_i:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(arg: Any, verb: str, spec: str, flags: str) -> str:
    align = "<" if "-" in spec else ">"
    spec = spec.replace("-", "")
    if verb in "sv":
        text = go_string(arg)
        if "." in spec:
            width, prec = spec.split(".")
            text = text[: int(prec or 0)]
            spec = width
        return format(text, align + spec.replace("0", "", 1) if spec else "")
    if verb == "q":
        return '"' + go_string(arg).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if verb == "t":
        return "true" if arg is True else "false" if arg is False else f"%!t({go_string(arg)})"
    if verb in "dxXobc":
        if not isinstance(arg, int) or isinstance(arg, bool):
            raise TypeError("not an integer")
        if verb == "c":
            return chr(arg)
        kind = "d" if verb == "d" else verb
        if spec.startswith("0") or "+" in spec or " " in spec:
            return format(arg, spec + kind)
        return format(arg, align + spec + kind if spec else kind)
    if verb in "feEgG":
        if not isinstance(arg, (int, float)) or isinstance(arg, bool):
            raise TypeError("not a number")
        if "." not in spec and verb in "feE":
            spec += ".6"
        if verb in "gG" and "." not in spec:
            text = go_float(float(arg))
            return format(text, align + spec) if spec else text
        if spec.startswith("0") or "+" in spec or " " in spec:
            return format(float(arg), spec + verb)
        return format(float(arg), align + spec + verb)
    raise ValueError(f"unsupported verb {verb}")


_GO_LAYOUT: Final = (
    ("January", "%B"),
    ("Monday", "%A"),
    ("2006", "%Y"),
    ("Jan", "%b"),
    ("Mon", "%a"),
    ("MST", "%Z"),
    ("Z07:00", "Z07:00"),
    ("-07:00", "-07:00"),
    ("-0700", "%z"),
    ("01", "%m"),
    ("02", "%d"),
    ("15", "%H"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("06", "%y"),
    ("PM", "%p"),
    (".000000000", ".NANO"),
    (".000000", ".%f"),
    (".000", ".MILLI"),
)


def go_date(layout: str, when: datetime) -> str:
    """Format a time with a Go reference layout (`2006-01-02T15:04:05Z07:00`)."""
    out: list[str] = []
    i = 0
    while i < len(layout):
        for token, directive in _GO_LAYOUT:
            if layout.startswith(token, i):
                if directive == ".NANO":
                    out.append(f".{when.microsecond:06d}000")
                elif directive == ".MILLI":
                    out.append(f".{when.microsecond // 1000:03d}")
                elif directive in ("Z07:00", "-07:00"):
                    offset = when.utcoffset() or timedelta(0)
                    if directive == "Z07:00" and offset == timedelta(0):
                        out.append("Z")
                    else:
                        minutes = int(offset.total_seconds() // 60)
                        sign = "-" if minutes < 0 else "+"
                        out.append(f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
                else:
                    out.append(when.strftime(directive))
                i += len(token)
                break
        else:
            out.append(layout[i])
            i += 1
    return "".join(out)


def _to_date(layout: str, text: str, zone: Any = UTC) -> datetime:
    """Parse text with a Go layout (the reverse of go_date, for the common directives)."""
    fmt = layout
    for token, directive in _GO_LAYOUT:
        if directive.startswith("."):
            directive = ".%f"
        if directive in ("Z07:00", "-07:00"):
            directive = "%z"
        fmt = fmt.replace(token, directive)
    try:
        parsed = datetime.strptime(text, fmt)
    except ValueError:
        return datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time, as Sprig's toDate gives
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def _zone(name: str) -> Any:
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    raise TemplateError(f"cannot use {go_string(value)!r} as a time")


def _regex(pattern: str) -> LogRegex:
    try:
        return compile_logql(pattern, anchored=False, captures=True)
    except RegexError as err:
        raise TemplateError(str(err)) from None


_GROUP_REF: Final = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _regex_replace(pattern: str, text: str, repl: str, *, literal: bool) -> str:
    """Sprig's regexReplaceAll(Literal): `$1`, `${1}` and `${name}` expand unless literal."""
    regex = _regex(pattern)
    if literal:
        return regex.replace_all(text, lambda _groups: repl)

    def expand(groups: list[str | None]) -> str:
        def ref(found: re.Match[str]) -> str:
            name = found.group(1) or found.group(2)
            index = int(name) if name.isdigit() else regex.names.get(name, -1)
            return (groups[index] or "") if 0 <= index < len(groups) else ""

        return _GROUP_REF.sub(ref, repl)

    return regex.replace_all(text, expand)


def _count(pattern: str, text: str) -> int:
    found = 0

    def tally(_groups: list[str | None]) -> str:
        nonlocal found
        found += 1
        return ""

    _regex(pattern).replace_all(text, tally)
    return found


def _compare(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, bool) != isinstance(b, bool):
        raise TemplateError("incompatible types for comparison")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a, b
    if type(a) is not type(b):
        raise TemplateError("incompatible types for comparison")
    return a, b


def _eq(a: Any, *others: Any) -> bool:
    return any(x == y for x, y in (_compare(a, b) for b in others))


def _lt(a: Any, b: Any) -> bool:
    x, y = _compare(a, b)
    return bool(x < y)


def _default(fallback: Any, *given: Any) -> Any:
    value = given[0] if given else None
    return value if truthy(value) else fallback


def _and(*args: Any) -> Any:
    for arg in args:
        if not truthy(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if truthy(arg):
            return arg
    return args[-1]


def _substr(start: Any, end: Any, text: str) -> str:
    s, e = _int(start), _int(end)
    if s < 0:
        return text[:e]
    if e < 0 or e > len(text):
        return text[s:]
    return text[s:e]


def _trunc(count: Any, text: str) -> str:
    n = _int(count)
    if n < 0:
        return text[max(len(text) + n, 0) :] if -n < len(text) else text
    return text[:n]


def _abbrev(width: Any, text: str) -> str:
    n = _int(width)
    if n < 4 or len(text) <= n:
        return text
    return text[: n - 3] + "..."


def _index(container: Any, *keys: Any) -> Any:
    for key in keys:
        is_map = isinstance(container, dict)
        container = container.get(key, "") if is_map else container[_int(key)]
    return container


def _unix_to_time(value: str) -> datetime:
    digits = value.strip()
    if not digits.lstrip("-").isdigit():
        raise TemplateError(f"invalid epoch {value!r}")
    number = int(digits)
    # Loki reads the epoch's unit from its length: s, ms, µs or ns.
    scale = {10: 1, 13: 1_000, 16: 1_000_000, 19: 1_000_000_000}.get(len(digits.lstrip("-")))
    if scale is None:
        raise TemplateError(f"unsupported epoch length {value!r}")
    return datetime.fromtimestamp(number / scale, UTC)


def _b64dec(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except ValueError as err:
        return str(err)


def _bytes(text: str) -> int:
    size = parse_bytes(text)
    return int(size) if size is not None else 0


def _duration(text: str) -> float:
    ns = parse_duration(text.lstrip("-"))
    if ns is None:
        raise TemplateError(f"invalid duration {text!r}")
    return (-ns if text.startswith("-") else ns) / 1e9


def _replace_go(text: str, old: str, new: str, count: Any) -> str:
    n = _int(count)
    return text.replace(old, new, n if n >= 0 else -1)


def _title(text: str) -> str:
    return re.sub(r"\b(\w)", lambda m: m.group(1).upper(), text)


def _placeholder(*_args: Any) -> Any:
    raise AssertionError("__line__ and __timestamp__ are read from the scope")


def _len(value: Any) -> int:
    if isinstance(value, (str, dict, list)):
        return len(value)
    raise TemplateError(f"len of {go_string(value)}")


FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "__line__": _placeholder,
    "__timestamp__": _placeholder,
    # Loki's own
    "ToLower": str.lower,
    "ToUpper": str.upper,
    "Replace": _replace_go,
    "Trim": lambda s, cut: s.strip(cut),
    "TrimLeft": lambda s, cut: s.lstrip(cut),
    "TrimRight": lambda s, cut: s.rstrip(cut),
    "TrimPrefix": lambda s, p: s.removeprefix(p),
    "TrimSuffix": lambda s, p: s.removesuffix(p),
    "TrimSpace": str.strip,
    "regexReplaceAll": lambda p, s, r: _regex_replace(p, s, r, literal=False),
    "regexReplaceAllLiteral": lambda p, s, r: _regex_replace(p, s, r, literal=True),
    "count": _count,
    "urlencode": lambda s: quote_plus(s),
    "urldecode": lambda s: unquote_plus(s),
    "b64enc": lambda s: base64.b64encode(s.encode()).decode(),
    "b64dec": _b64dec,
    "bytes": _bytes,
    "duration": _duration,
    "duration_seconds": _duration,
    "unixEpoch": lambda t: int(_when(t).timestamp()),
    "unixEpochMillis": lambda t: int(_when(t).timestamp() * 1_000),
    "unixEpochNanos": lambda t: int(_when(t).timestamp() * 1_000_000) * 1_000,
    "unixToTime": _unix_to_time,
    "toDateInZone": lambda layout, zone, s: _to_date(layout, s, _zone(zone)),
    "alignLeft": lambda n, s: s[: _width(n)].ljust(_width(n)),
    "alignRight": lambda n, s: s[-_width(n) :].rjust(_width(n)) if _width(n) > 0 else "",
    # Sprig's
    "lower": str.lower,
    "upper": str.upper,
    "title": _title,
    "untitle": lambda s: re.sub(r"\b(\w)", lambda m: m.group(1).lower(), s),
    "trunc": _trunc,
    "substr": _substr,
    "abbrev": _abbrev,
    "contains": lambda sub, s: sub in s,
    "hasPrefix": lambda p, s: s.startswith(p),
    "hasSuffix": lambda p, s: s.endswith(p),
    "indent": lambda n, s: "\n".join(" " * _width(n) + ln for ln in s.split("\n")),
    "nindent": lambda n, s: "\n" + "\n".join(" " * _width(n) + ln for ln in s.split("\n")),
    "replace": lambda old, new, s: s.replace(old, new),
    "repeat": lambda n, s: s * max(min(_int(n), MAX_WIDTH // max(len(s), 1)), 0),
    "trim": str.strip,
    "trimAll": lambda cut, s: s.strip(cut),
    "trimPrefix": lambda p, s: s.removeprefix(p),
    "trimSuffix": lambda p, s: s.removesuffix(p),
    "nospace": lambda s: re.sub(r"\s", "", s),
    "int": _int,
    "int64": _int,
    "float64": _float,
    "toString": go_string,
    "add": lambda *xs: sum(_int(x) for x in xs),
    "add1": lambda x: _int(x) + 1,
    "sub": lambda a, b: _int(a) - _int(b),
    "mul": lambda *xs: math.prod(_int(x) for x in xs),
    "div": lambda a, b: int(_int(a) / _int(b)),
    "mod": lambda a, b: int(math.fmod(_int(a), _int(b))),
    "addf": lambda *xs: math.fsum(_float(x) for x in xs),
    "subf": lambda a, *bs: _float(a) - math.fsum(_float(b) for b in bs),
    "mulf": lambda *xs: math.prod(_float(x) for x in xs),
    "divf": lambda a, *bs: _float(a) / math.prod(_float(b) for b in bs),
    "max": lambda *xs: max(_int(x) for x in xs),
    "min": lambda *xs: min(_int(x) for x in xs),
    "maxf": lambda *xs: max(_float(x) for x in xs),
    "minf": lambda *xs: min(_float(x) for x in xs),
    "ceil": lambda x: float(math.ceil(_float(x))),
    "floor": lambda x: float(math.floor(_float(x))),
    "round": lambda x, places=0, half=0.5: float(round(_float(x), _int(places))),
    "default": _default,
    "empty": lambda v: not truthy(v),
    "coalesce": lambda *xs: next((x for x in xs if truthy(x)), None),
    "ternary": lambda a, b, cond: a if truthy(cond) else b,
    "date": lambda layout, t: go_date(layout, _when(t)),
    "toDate": lambda layout, s: _to_date(layout, s),
    "now": lambda: datetime.now(UTC),
    "fromJson": lambda s: __import__("orjson").loads(s),
    # Go's builtins
    "and": _and,
    "or": _or,
    "not": lambda v: not truthy(v),
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _lt,
    "le": lambda a, b: _lt(a, b) or _eq(a, b),
    "gt": lambda a, b: _lt(b, a),
    "ge": lambda a, b: _lt(b, a) or _eq(a, b),
    "len": _len,
    "index": _index,
    "print": lambda *xs: "".join(go_string(x) for x in xs),
    "println": lambda *xs: " ".join(go_string(x) for x in xs) + "\n",
    "printf": go_printf,
    "urlquery": lambda *xs: quote_plus("".join(go_string(x) for x in xs)),
    "html": lambda *xs: __import__("html").escape("".join(go_string(x) for x in xs)),
    "js": lambda *xs: "".join(go_string(x) for x in xs).replace("'", "\\'").replace('"', '\\"'),
}
"""Name → function. In a pipeline the previous value is the last argument, as in Go."""
