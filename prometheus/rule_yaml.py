"""Prometheus rule files as data, and their YAML with the reason for each rule beside it."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    """A recording rule (`record`) or an alerting rule (`alert`); `why` becomes its comment."""

    name: str
    expr: str
    why: str = ""
    alert: bool = False
    for_: str = ""
    keep_firing_for: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Group:
    """A rule group: its rules are evaluated in order, so later ones may read earlier ones."""

    name: str
    rules: list[Rule]


def expr(text: str) -> str:
    """A PromQL expression written as an indented block: dedented, without edge blank lines."""
    return textwrap.dedent(text).strip()


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, 96 - len(indent))]


def _mapping(key: str, values: dict[str, str], indent: str) -> list[str]:
    if not values:
        return []
    # JSON strings are YAML double-quoted scalars: templates and quotes need no other escaping.
    return [f"{indent}{key}:"] + [
        f"{indent}  {name}: {json.dumps(value, ensure_ascii=False)}"
        for name, value in values.items()
    ]


def render(groups: list[Group], header: list[str]) -> str:
    """The rule file: a header comment, then each group's rules with their comments."""
    lines = [f"# {line}" if line else "#" for line in header] + ["groups:"]
    for group in groups:
        lines += [f"  - name: {group.name}", "    rules:"]
        for index, rule in enumerate(group.rules):
            if index:
                lines.append("")
            lines += _comment(rule.why, "      ")
            lines.append(f"      - {'alert' if rule.alert else 'record'}: {rule.name}")
            lines.append("        expr: |")
            lines += [f"          {line}" if line else "" for line in rule.expr.splitlines()]
            if rule.for_:
                lines.append(f"        for: {rule.for_}")
            if rule.keep_firing_for:
                lines.append(f"        keep_firing_for: {rule.keep_firing_for}")
            lines += _mapping("labels", rule.labels, "        ")
            lines += _mapping("annotations", rule.annotations, "        ")
        lines.append("")
    return "\n".join(lines[:-1]) + "\n"
