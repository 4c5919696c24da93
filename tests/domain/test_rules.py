from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbo_platform.domain.rules import (
    DEFAULT_RULES_PATH,
    RulesError,
    lint,
    load_rules,
    offer_ids_sql,
    parse_rules,
    rule_id_sql,
    rule_index_sql,
)
from nbo_platform.duck import connect


def rules_yaml(*rules: str, default: int = 9) -> str:
    return f"default_offer: {default}\nrules:\n" + "\n".join(f"  - {r}" for r in rules)


def test_shipped_rules_report_rule_4_shadowed_by_rule_3():
    findings = lint(load_rules(DEFAULT_RULES_PATH))
    assert [f.message for f in findings] == [
        "rule 4 'new_auto_loan' (offer 4) can never fire: every row it matches is matched first by "
        "rule 3 'new_home_loan'"
    ]


def test_unknown_field_names_the_file_and_the_rule():
    text = rules_yaml("{id: a, offer_id: 1, when: {income: {gt: 1}}}", "{id: b, offer_id: 2, when: {incme: {gt: 1}}}")
    with pytest.raises(RulesError, match=r"my_rules.yaml: rule 2 'b': unknown field 'incme'"):
        parse_rules(text, source="my_rules.yaml")


def test_unknown_rule_key_and_operator_are_errors():
    with pytest.raises(RulesError, match=r"rule 1 'a': unknown field\(s\) \['offer'\]"):
        parse_rules(rules_yaml("{id: a, offer: 1}"))
    with pytest.raises(RulesError, match=r"rule 1 'a': income: unknown operator\(s\) \['greater'\]"):
        parse_rules(rules_yaml("{id: a, offer_id: 1, when: {income: {greater: 1}}}"))


def test_bad_yaml_names_the_file_and_line(tmp_path: Path):
    path = tmp_path / "nbo_rules.yaml"
    path.write_text("default_offer: 5\nrules:\n  - {id: a, offer_id: 1\n")
    with pytest.raises(RulesError, match=rf"{path}: invalid YAML at line \d"):
        load_rules(path)


def test_non_integer_threshold_on_integer_field_is_an_error():
    with pytest.raises(RulesError, match="fico is a whole number"):
        parse_rules(rules_yaml("{id: a, offer_id: 1, when: {fico: {gt: 600.5}}}"))


def test_duplicate_rule_ids_are_an_error():
    with pytest.raises(RulesError, match="rule 2 'a': id already used by rule 1"):
        parse_rules(rules_yaml("{id: a, offer_id: 1}", "{id: a, offer_id: 2}"))


def test_contradictory_rule_can_never_fire():
    findings = lint(parse_rules(rules_yaml("{id: a, offer_id: 1, when: {income: {gt: 5, lt: 3}}}")))
    assert findings[0].message == "rule 1 'a' can never fire: its conditions contradict each other"


def test_integer_boundaries_count_as_covered():
    # Over whole numbers, income > 100 and income >= 101 match the same customers.
    rs = parse_rules(
        rules_yaml(
            "{id: a, offer_id: 1, when: {income: {gt: 100}}}", "{id: b, offer_id: 2, when: {income: {gte: 101}}}"
        )
    )
    assert [f.rule.id for f in lint(rs)] == ["b"]


def test_float_gap_between_bounds_keeps_a_rule_alive():
    rs = parse_rules(
        rules_yaml(
            "{id: a, offer_id: 1, when: {propensity_to_buy: {gt: 0.5}}}",
            "{id: b, offer_id: 2, when: {propensity_to_buy: {gte: 0.5}}}",
        )
    )
    assert lint(rs) == []  # propensity exactly 0.5 reaches rule b


def test_rule_covered_only_by_several_earlier_rules_together():
    rs = parse_rules(
        rules_yaml(
            "{id: low, offer_id: 1, when: {income: {lt: 50}}}",
            "{id: high, offer_id: 2, when: {income: {gte: 50}}}",
            "{id: any, offer_id: 3, when: {fico: {gt: 700}}}",
        )
    )
    [finding] = lint(rs)
    assert finding.rule.id == "any" and "rule 1 'low', rule 2 'high'" in finding.message


def test_categories_in_and_not_in_cover_everything():
    rs = parse_rules(
        rules_yaml(
            "{id: web, offer_id: 1, when: {activity_type: {in: [web_open]}}}",
            "{id: rest, offer_id: 2, when: {activity_type: {not_in: [web_open]}}}",
            "{id: never, offer_id: 3}",
        )
    )
    assert [f.rule.id for f in lint(rs)] == ["never"]


def test_offer_ids_missing_from_offers_are_errors():
    findings = lint(load_rules(DEFAULT_RULES_PATH), known_offers={1, 2, 3, 5})
    assert [f.message for f in findings if f.severity == "error"] == [
        "rule 4 'new_auto_loan': offer_id 4 is not in the offers table"
    ]


def recipe_case(income: int, fico: int, p: float) -> int:
    """The recipe's CASE, transcribed."""
    if income > 100000 and fico < 700 and p < 0.9:
        return 1
    if income < 50000 and p < 0.9:
        return 2
    if income >= 50000 and fico >= 600 and p < 0.9:
        return 3
    if income > 100000 and fico >= 700 and p < 0.9:
        return 4
    return 5


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 49999, 50000, 50001, 100000, 100001]) | st.integers(0, 500000),
            st.sampled_from([599, 600, 699, 700, 701]) | st.integers(300, 850),
            st.sampled_from([0.0, 0.89, 0.9, 0.91, 1.0]) | st.floats(0, 1),
        ),
        min_size=1,
        max_size=50,
    )
)
@settings(deadline=None, max_examples=60)
def test_compiled_shipped_rules_agree_with_the_recipe_case(rows):
    rules = load_rules(DEFAULT_RULES_PATH)
    con = connect()
    con.execute(
        "CREATE TABLE t (i INT, income BIGINT, fico BIGINT, propensity_to_buy DOUBLE, "
        "activity_type VARCHAR, gender VARCHAR)"
    )
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, 'x', NULL)", [(i, *r) for i, r in enumerate(rows)])
    got = con.execute(
        f"SELECT {offer_ids_sql(rules)}[{rule_index_sql(rules)}], {rule_id_sql(rules, rule_index_sql(rules))} "
        "FROM t ORDER BY i"
    ).fetchall()
    assert [g[0] for g in got] == [recipe_case(*r) for r in rows]
    assert "new_auto_loan" not in {g[1] for g in got}
