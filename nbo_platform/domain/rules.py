"""Next Best Offer rules: the ordered rule list of ``nbo_rules.yaml``.

Format (the recipe's five rules ship as ``nbo_platform/defaults/nbo_rules.yaml``)::

    version: 1
    default_offer: 5          # offer when no rule matches
    rules:                    # evaluated top to bottom; the first match wins
      - id: new_savings
        offer_id: 1
        when:                 # every condition must hold
          income: {gt: 100000}
          fico: {lt: 700}
          propensity_to_buy: {lt: 0.9}

Numeric fields take ``gt``, ``gte``, ``lt``, ``lte`` and ``eq``; categorical fields take ``in``,
``not_in`` and ``eq``. Because each rule is a conjunction of per-field conditions, the set of
profiles it matches is a box, and ``lint`` can decide exactly whether a rule can ever fire: it splits
the rule's box at every bound of the earlier rules and checks that some cell escapes them all.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from nbo_platform.duck import enum_sql, sql_literal

# field -> (kind, SQL expression over the joined activity/customer row)
FIELDS: dict[str, tuple[Literal["int", "float", "category"], str]] = {
    "income": ("int", "income"),
    "fico": ("int", "fico"),
    "propensity_to_buy": ("float", "propensity_to_buy"),
    "activity_type": ("category", "activity_type"),
    "gender": ("category", "gender"),
}
NUMERIC_OPS = ("gt", "gte", "lt", "lte", "eq")
CATEGORY_OPS = ("in", "not_in", "eq")
RULE_KEYS = {"id", "offer_id", "when", "description"}
TOP_KEYS = {"version", "default_offer", "rules"}
DEFAULT_RULE_ID = "default"
DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "defaults" / "nbo_rules.yaml"


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the rule."""


@dataclass(frozen=True)
class Interval:
    lo: float = -math.inf
    lo_closed: bool = False
    hi: float = math.inf
    hi_closed: bool = False

    def contains(self, x: float) -> bool:
        above = x > self.lo or (self.lo_closed and x == self.lo)
        below = x < self.hi or (self.hi_closed and x == self.hi)
        return above and below

    def intersect(self, other: Interval) -> Interval:
        lo, lo_c = max((self.lo, not self.lo_closed), (other.lo, not other.lo_closed))
        hi, hi_c = min((self.hi, self.hi_closed), (other.hi, other.hi_closed))
        return Interval(lo, not lo_c, hi, hi_c)


@dataclass(frozen=True)
class Category:
    values: frozenset[str]
    negated: bool = False  # not_in

    def contains(self, v: str | None) -> bool:
        # None stands for any value no rule names (and for NULL, compiled the same way).
        return (v in self.values) != self.negated if v is not None else self.negated


Condition = Interval | Category


@dataclass(frozen=True)
class Rule:
    position: int  # 1-based, as a person counts them
    id: str
    offer_id: int
    when: dict[str, Condition] = field(hash=False)
    description: str = ""

    @property
    def label(self) -> str:
        return f"rule {self.position} '{self.id}'"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    default_offer: int
    source: str = "<rules>"

    @property
    def offer_ids(self) -> set[int]:
        return {r.offer_id for r in self.rules} | {self.default_offer}


# --------------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------------


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text()
    except OSError as e:
        raise RulesError(f"{path}: cannot read rules file: {e}") from e
    return parse_rules(text, source=str(path))


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RulesError(f"{source}: invalid YAML{where}: {getattr(e, 'problem', e)}") from e
    if not isinstance(doc, dict):
        raise RulesError(f"{source}: expected a mapping with 'default_offer' and 'rules'")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise RulesError(f"{source}: unknown top-level field(s) {sorted(unknown)} (allowed: {sorted(TOP_KEYS)})")
    if doc.get("version", 1) != 1:
        raise RulesError(f"{source}: unsupported version {doc.get('version')!r} (this release reads version 1)")
    default = doc.get("default_offer")
    if not _is_int(default):
        raise RulesError(f"{source}: 'default_offer' must be an offer id (an integer), got {default!r}")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(f"{source}: 'rules' must be a non-empty list")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_rules, start=1):
        rule = _parse_rule(raw, i, source)
        if rule.id in seen or rule.id == DEFAULT_RULE_ID:
            raise RulesError(f"{source}: {rule.label}: id already used by rule {seen.get(rule.id, 'default')}")
        seen[rule.id] = i
        rules.append(rule)
    return RuleSet(tuple(rules), int(default), source)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _parse_rule(raw: object, position: int, source: str) -> Rule:
    where = f"{source}: rule {position}"
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: expected a mapping with id, offer_id and when, got {raw!r}")
    if isinstance(raw.get("id"), str) and raw["id"]:
        where += f" '{raw['id']}'"
    else:
        raise RulesError(f"{where}: 'id' must be a non-empty string")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown field(s) {sorted(unknown)} (allowed: {sorted(RULE_KEYS)})")
    if not _is_int(raw.get("offer_id")):
        raise RulesError(f"{where}: 'offer_id' must be an integer, got {raw.get('offer_id')!r}")
    when = raw.get("when") or {}
    if not isinstance(when, dict):
        raise RulesError(f"{where}: 'when' must map fields to conditions, got {when!r}")
    conditions: dict[str, Condition] = {}
    for fname, spec in when.items():
        if fname not in FIELDS:
            raise RulesError(f"{where}: unknown field {fname!r} in 'when' (fields: {', '.join(FIELDS)})")
        conditions[fname] = _parse_condition(fname, spec, where)
    return Rule(position, raw["id"], int(raw["offer_id"]), conditions, str(raw.get("description", "")))


def _parse_condition(fname: str, spec: object, where: str) -> Condition:
    kind = FIELDS[fname][0]
    ops = CATEGORY_OPS if kind == "category" else NUMERIC_OPS
    if not isinstance(spec, dict) or not spec:
        raise RulesError(f"{where}: {fname}: expected a mapping of operators ({', '.join(ops)}), got {spec!r}")
    bad = set(spec) - set(ops)
    if bad:
        raise RulesError(f"{where}: {fname}: unknown operator(s) {sorted(bad)} (allowed: {', '.join(ops)})")
    if kind == "category":
        if len(spec) > 1:
            raise RulesError(f"{where}: {fname}: use one of {', '.join(ops)}, not several")
        op, val = next(iter(spec.items()))
        values = [val] if op == "eq" else val
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise RulesError(f"{where}: {fname}.{op}: expected {'a string' if op == 'eq' else 'a list of strings'}")
        return Category(frozenset(values), negated=(op == "not_in"))
    interval = Interval()
    for op, val in spec.items():
        if not _is_number(val):
            raise RulesError(f"{where}: {fname}.{op}: expected a number, got {val!r}")
        if kind == "int" and not float(val).is_integer():
            raise RulesError(f"{where}: {fname}.{op}: {fname} is a whole number, got {val!r}")
        interval = interval.intersect(
            {
                "gt": Interval(lo=val),
                "gte": Interval(lo=val, lo_closed=True),
                "lt": Interval(hi=val),
                "lte": Interval(hi=val, hi_closed=True),
                "eq": Interval(val, True, val, True),
            }[op]
        )
    return interval


# --------------------------------------------------------------------------------------------
# Lint: rules that can never fire
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    severity: Literal["warning", "error"]
    rule: Rule | None
    message: str


MAX_CELLS = 2_000_000


def _numeric_pieces(kind: str, box: Interval, bounds: set[float]) -> list[float]:
    """One representative value per elementary piece of ``box`` cut at ``bounds``."""
    pts = sorted(b for b in bounds if math.isfinite(b))
    reps: list[float] = []
    edges = [-math.inf, *pts, math.inf]
    for a, b in itertools.pairwise(edges):
        if kind == "int":
            lo = math.floor(a) + 1 if math.isfinite(a) else -math.inf
            hi = math.ceil(b) - 1 if math.isfinite(b) else math.inf
            if lo > hi:
                continue
            rep = lo if math.isfinite(lo) else (hi if math.isfinite(hi) else 0)
        else:
            rep = (
                (a + b) / 2
                if math.isfinite(a) and math.isfinite(b)
                else (b - 1 if math.isfinite(b) else (a + 1 if math.isfinite(a) else 0))
            )
        reps.append(rep)
    reps.extend(pts)
    return [r for r in reps if box.contains(r)]


def _pieces(fname: str, rule: Rule, others: Sequence[Rule]) -> list:
    kind = FIELDS[fname][0]
    involved = [rule, *others]
    if kind == "category":
        names = set().union(*(r.when[fname].values for r in involved if fname in r.when))
        reps: list[str | None] = [*sorted(names), None]
        cond = rule.when.get(fname)
        return [v for v in reps if cond is None or cond.contains(v)]
    bounds: set[float] = set()
    for r in involved:
        c = r.when.get(fname)
        if isinstance(c, Interval):
            bounds |= {c.lo, c.hi}
    box = rule.when.get(fname, Interval())
    return _numeric_pieces(kind, box, bounds)


def covering_rules(rule: Rule, earlier: Sequence[Rule]) -> list[Rule] | None:
    """The earlier rules that together match everything ``rule`` matches, or None if some row escapes.

    Returns an empty list when ``rule`` can match nothing at all.
    """
    fields = sorted(set(rule.when).union(*(r.when for r in earlier)))
    pieces = [_pieces(f, rule, earlier) for f in fields]
    if any(not p for p in pieces):
        return []
    if math.prod(len(p) for p in pieces) > MAX_CELLS:
        return None  # too many cells to decide exactly; stay silent rather than guess
    used: dict[int, Rule] = {}
    for cell in itertools.product(*pieces):
        point = dict(zip(fields, cell, strict=True))
        hit = next((r for r in earlier if all(c.contains(point[f]) for f, c in r.when.items())), None)
        if hit is None:
            return None
        used[hit.position] = hit
    return [used[k] for k in sorted(used)]


def lint(rules: RuleSet, known_offers: set[int] | None = None) -> list[Finding]:
    findings: list[Finding] = []
    for i, rule in enumerate(rules.rules):
        cover = covering_rules(rule, rules.rules[:i])
        if cover is None:
            continue
        if not cover:
            msg = f"{rule.label} can never fire: its conditions contradict each other"
        else:
            by = ", ".join(r.label for r in cover)
            msg = f"{rule.label} (offer {rule.offer_id}) can never fire: every row it matches is matched first by {by}"
        findings.append(Finding("warning", rule, msg))
    if known_offers is not None:
        for rule in rules.rules:
            if rule.offer_id not in known_offers:
                findings.append(
                    Finding("error", rule, f"{rule.label}: offer_id {rule.offer_id} is not in the offers table")
                )
        if rules.default_offer not in known_offers:
            findings.append(Finding("error", None, f"default_offer {rules.default_offer} is not in the offers table"))
    return findings


# --------------------------------------------------------------------------------------------
# Compilation to one vectorized SQL expression
# --------------------------------------------------------------------------------------------


def _condition_sql(fname: str, cond: Condition) -> str:
    expr = FIELDS[fname][1]
    if isinstance(cond, Category):
        values = ", ".join(sql_literal(v) for v in sorted(cond.values))
        # NULL behaves as a value no rule names, as in the linter.
        return f"({expr} IS NULL OR {expr} NOT IN ({values}))" if cond.negated else f"{expr} IN ({values})"
    parts = []
    if math.isfinite(cond.lo):
        parts.append(f"{expr} {'>=' if cond.lo_closed else '>'} {sql_literal(cond.lo)}")
    if math.isfinite(cond.hi):
        parts.append(f"{expr} {'<=' if cond.hi_closed else '<'} {sql_literal(cond.hi)}")
    return " AND ".join(parts) or "TRUE"


def rule_condition_sql(rule: Rule) -> str:
    """The SQL predicate of one rule (TRUE for a rule without conditions)."""
    return " AND ".join(_condition_sql(f, c) for f, c in rule.when.items()) or "TRUE"


def rule_index_sql(rules: RuleSet) -> str:
    """A CASE giving the 1-based position of the first matching rule, or len(rules) + 1."""
    whens = "\n".join(f"    WHEN {rule_condition_sql(r)} THEN {r.position}" for r in rules.rules)
    return f"CASE\n{whens}\n    ELSE {len(rules.rules) + 1}\nEND"


def offer_ids_sql(rules: RuleSet) -> str:
    return "[" + ", ".join(str(r.offer_id) for r in rules.rules) + f", {rules.default_offer}]"


def rule_id_sql(rules: RuleSet, position: str) -> str:
    """The rule id, as an ENUM of the rule ids, of the 1-based rule position ``position`` (SQL); the
    default rule's for ``len(rules) + 1``.

    An ENUM costs a Parquet writer nothing to encode (its dictionary is known), unlike the same text.
    """
    enum = enum_sql([r.id for r in rules.rules] + [DEFAULT_RULE_ID])
    whens = " ".join(f"WHEN {r.position} THEN {sql_literal(r.id)}::{enum}" for r in rules.rules)
    return f"CASE {position} {whens} WHEN {len(rules.rules) + 1} THEN {sql_literal(DEFAULT_RULE_ID)}::{enum} END"
