"""The limits of one GraphQL request (depth, cost, aliases, tokens, page size), each refused
as a GraphQL error that names it, before anything is read; introspection stays open."""

from __future__ import annotations

from graphql import get_introspection_query

from app.security import Principal
from modules.graphql import services
from modules.graphql.limits import (
    MAX_ALIASES,
    MAX_COST,
    MAX_DEPTH,
    MAX_OVERLAPS,
    MAX_QUERY_LENGTH,
    MAX_SELECTIONS,
    MAX_TOKENS,
)

from .conftest import GRAPHQL, Shop, counted_statements, problem_of

#: Every nested list of a page of orders: about 9,000 objects for a full page of 200.
FULL_ITEMS = """items { id lines { name }
    invoices { id lines { name } payments { id transactions { id } } }
    payments { id transactions { id } } }"""
FULL_PAGE = f"orders(first: 200) {{ {FULL_ITEMS} }}"


def test_a_query_deeper_than_the_limit_is_refused_before_it_runs(pg_shop: Shop) -> None:
    staff = pg_shop.user("staff")
    # The schema's deepest path is 6 (ids point upwards): nesting past the limit is refused
    # for its depth, whatever else is wrong with it.
    deep = (
        "{ orders { items { invoices { payments { transactions { "
        + ("a { " * (MAX_DEPTH - 4) + "b" + " }" * (MAX_DEPTH - 4))
        + " } } } } } }"
    )

    with counted_statements(pg_shop.app) as sent:
        errors = pg_shop.errors(staff, deep)

    assert f"exceeds maximum operation depth of {MAX_DEPTH}" in errors[0]["message"]
    assert [statement for _, statement in sent if "marketplace_" in statement] == []


def test_a_query_that_may_return_too_many_objects_is_refused_with_its_cost(
    pg_shop: Shop,
) -> None:
    staff = pg_shop.user("staff")
    assert "errors" not in pg_shop.ask(staff, f"{{ {FULL_PAGE} }}").get_json()

    response = pg_shop.ask(staff, f"{{ a: {FULL_PAGE} b: {FULL_PAGE} }}")
    body = response.get_json()
    assert response.status_code == 200
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "query-too-costly"
    inline_cost = error["extensions"]["cost"]
    assert error["extensions"]["max_cost"] == MAX_COST
    assert error["extensions"]["cost"] > MAX_COST
    assert "smaller pages" in error["message"]
    # A page size given as a variable counts as given.
    query = "query ($n: Int!) { orders(first: $n) { items { lines { name } } } }"
    (error,) = pg_shop.errors(staff, query, n=5000)
    assert error["extensions"]["code"] == "query-too-costly"
    # So does the default of the variable, when the request leaves it out.
    defaulted = (
        f"query ($n: Int = 200) {{ a: orders(first: $n) {{ {FULL_ITEMS} }} "
        f"b: orders(first: $n) {{ {FULL_ITEMS} }} }}"
    )
    (error,) = pg_shop.errors(staff, defaulted)
    assert error["extensions"]["code"] == "query-too-costly"
    assert error["extensions"]["cost"] == inline_cost
    assert "errors" not in pg_shop.ask(staff, defaulted, n=10).get_json()


def doubling(levels: int, leaf: str = "orders { next_cursor }") -> str:
    """A document of a few hundred bytes whose fragments, spread in place, select ``leaf``
    2**levels times: each fragment spreads the next one twice."""
    fragments = " ".join(
        f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)
    )
    return f"{{ ...F0 }} {fragments} fragment F{levels} on Query {{ {leaf} }}"


def test_fragments_spread_into_too_many_selections_are_refused_before_validation(
    pg_shop: Shop,
) -> None:
    staff = pg_shop.user("staff")
    # 2**40 selections from about 1,600 bytes: validated, or counted, one spread at a time,
    # this would not return.
    with counted_statements(pg_shop.app) as sent:
        (error,) = pg_shop.errors(staff, doubling(40))

    assert error["extensions"] == {"code": "query-too-complex", "max_selections": MAX_SELECTIONS}
    assert "fragments" in error["message"]
    assert [statement for _, statement in sent if "marketplace_" in statement] == []
    # 2**10 pages of a field each, through 2,046 spreads: within the bound, validated and
    # answered (the spreads of one field merge into one).
    assert pg_shop.graphql(staff, doubling(10)) == {"orders": {"next_cursor": None}}
    # A spread is a selection too: a long chain of them costs the rules as much as fields.
    chain = " ".join(f"fragment C{n} on Query {{ ...C{n + 1} }}" for n in range(200))
    chained = f"{doubling(5, leaf='...C0')} {chain} fragment C200 on Query {{ __typename }}"
    (error,) = pg_shop.errors(staff, chained)  # 32 times 200 spreads
    assert error["extensions"]["code"] == "query-too-complex"


def test_fields_repeated_at_one_place_past_the_limit_are_refused_before_validation(
    pg_shop: Shop,
) -> None:
    staff = pg_shop.user("staff")
    # 280 repeats in 2,000 tokens: each pair of them compared by the merge rule, and again
    # under each pair (a second's validation), for nothing the answer would not hold once.
    repeated = "{ orders { items { " + "invoices { payments { id } } " * 280 + "} } }"
    with counted_statements(pg_shop.app) as sent:
        (error,) = pg_shop.errors(staff, repeated)

    assert error["extensions"] == {"code": "query-too-complex", "max_overlaps": MAX_OVERLAPS}
    assert "117180 pairs" in error["message"]  # 3 places of 280 fields: 3 * 280 * 279 / 2
    assert [statement for _, statement in sent if "marketplace_" in statement] == []
    # Fragments spread in place count, inline or named, each named one once per place.
    inline = "{ orders { items { " + "... on Order { id } " * 46 + "} } }"
    (error,) = pg_shop.errors(staff, inline)
    assert error["extensions"]["code"] == "query-too-complex"
    spreads = " ".join(f"...F{n} ...F{n}" for n in range(46))
    fragments = " ".join(f"fragment F{n} on Order {{ id }}" for n in range(46))
    (error,) = pg_shop.errors(staff, f"{{ orders {{ items {{ {spreads} }} }} }} {fragments}")
    assert "1035 pairs" in error["message"]  # 46 * 45 / 2: a second spread of F0 adds none
    # Colocated fragments that each select the id beside their own fields are answered, as
    # are two operations each selecting the same fields (validated each on its own).
    colocated = " ".join(f"...F{n}" for n in range(45))
    used = " ".join(f"fragment F{n} on Order {{ id }}" for n in range(45))
    answer = pg_shop.graphql(
        staff, f"{{ orders {{ items {{ {colocated} }} next_cursor }} }} {used}"
    )
    assert answer == {"orders": {"items": [], "next_cursor": None}}
    same = "{ orders { items { id number } } }"
    operations = " ".join(f"query Q{n} {same}" for n in range(46))
    response = pg_shop.client.post(
        GRAPHQL, json={"query": operations, "operationName": "Q1"}, headers=staff.headers
    )
    assert response.get_json() == {"data": {"orders": {"items": []}}}


def test_a_spread_of_a_fragment_that_is_not_there_is_a_graphql_error(pg_shop: Shop) -> None:
    staff = pg_shop.user("staff")
    (error,) = pg_shop.errors(staff, "{ orders { ...Missing } }")
    assert error["message"] == "Unknown fragment 'Missing'."
    assert error["locations"] == [{"line": 1, "column": 12}]
    (error,) = pg_shop.errors(staff, "{ orders { } }")
    assert error["message"] == "a selection set is empty: select at least one field"
    cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"
    (error,) = pg_shop.errors(staff, cycle)
    assert error["message"] == "Cannot spread fragment 'A' within itself."


def test_page_sizes_aliases_and_tokens_have_their_limits(pg_shop: Shop) -> None:
    staff = pg_shop.user("staff")
    (error,) = pg_shop.errors(staff, "{ orders(first: 201) { next_cursor } }")
    assert error["extensions"]["code"] == "validation-failed"
    assert list(error["extensions"]["errors"]) == ["first"]
    (error,) = pg_shop.errors(staff, "{ transactions(first: 0) { next_cursor } }")
    assert list(error["extensions"]["errors"]) == ["first"]

    aliased = " ".join(f"o{n}: orders(first: 1) {{ next_cursor }}" for n in range(MAX_ALIASES + 1))
    (error,) = pg_shop.errors(staff, f"{{ {aliased} }}")
    assert error["message"] == f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"

    wordy = "{ orders { items { " + " ".join(["id"] * MAX_TOKENS) + " } } }"
    (error,) = pg_shop.errors(staff, wordy)
    assert f"more than {MAX_TOKENS} tokens" in error["message"]


def test_a_document_longer_than_the_limit_is_refused_comments_included(pg_shop: Shop) -> None:
    staff = pg_shop.user("staff")
    query = "{ orders { next_cursor } }\n"
    longest = query + "#" * (MAX_QUERY_LENGTH - len(query))
    assert pg_shop.graphql(staff, longest) == {"orders": {"next_cursor": None}}

    refused = problem_of(pg_shop.ask(staff, longest + "#"), 422)
    assert list(refused["errors"]) == ["query"]
    # The parser holds the same bound for any caller of the service.
    with pg_shop.app.app_context():
        actor = Principal(staff.user_id, staff.uuid, staff.email, "staff")
        (error,) = services.execute(actor, longest + "#")["errors"]
    assert error["message"].startswith(
        f"Syntax Error: Source contains more than {MAX_QUERY_LENGTH}"
    )


def test_a_cursor_of_another_listing_is_refused(pg_shop: Shop) -> None:
    shop = pg_shop
    staff, dewi = shop.user("staff"), shop.user()
    product = shop.product()
    for quantity in ("1", "2"):
        shop.order(dewi, (product, quantity), provider="demo")
    orders_cursor = shop.graphql(staff, "{ orders(first: 1) { next_cursor } }")["orders"]
    transactions = "query ($a: String) { transactions(first: 1, after: $a) { items { id } } }"

    (error,) = shop.errors(staff, transactions, a=orders_cursor["next_cursor"])

    assert error["extensions"]["code"] == "invalid-cursor"
    assert error["path"] == ["transactions"]


def test_introspection_is_open_to_callers_and_within_the_limits(pg_shop: Shop) -> None:
    customer = pg_shop.user()
    schema = pg_shop.graphql(customer, get_introspection_query(descriptions=True))["__schema"]

    assert schema["queryType"]["name"] == "Query"
    assert schema["mutationType"] is None
    names = {t["name"] for t in schema["types"]}
    assert {"Order", "Invoice", "Payment", "ProviderTransaction", "SettlementSummary"} <= names


def test_the_cost_is_that_of_the_operation_that_runs(pg_shop: Shop) -> None:
    staff = pg_shop.user("staff")
    cheap = "query Cheap { orders(first: 1) { next_cursor } }"
    dear = f"query Dear {{ a: {FULL_PAGE} b: {FULL_PAGE} }}"
    two = f"{cheap} {dear}"

    assert pg_shop.graphql(staff, two) == {"orders": {"next_cursor": None}}
    response = pg_shop.client.post(
        GRAPHQL, json={"query": two, "operationName": "Dear"}, headers=staff.headers
    )
    assert response.get_json()["errors"][0]["extensions"]["code"] == "query-too-costly"
    # A fragment counts at each of its spreads as if it were written there.
    fragment = (
        "{ a: orders(first: 200) { ...Full } b: orders(first: 200) { ...Full } } "
        f"fragment Full on OrderPage {{ {FULL_ITEMS} }}"
    )
    (spread,) = pg_shop.errors(staff, fragment)
    (inline,) = pg_shop.errors(staff, f"{{ a: {FULL_PAGE} b: {FULL_PAGE} }}")
    assert spread["extensions"] == inline["extensions"]
    first_dear = (
        f"query Dear {{ a: {FULL_PAGE} b: {FULL_PAGE} }} query Cheap {{ orders {{ next_cursor }} }}"
    )
    (error,) = pg_shop.errors(staff, first_dear)
    assert error["extensions"]["code"] == "query-too-costly"
