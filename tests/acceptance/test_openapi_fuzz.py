"""The fuzz gate: every operation of the OpenAPI document, fuzzed as an admin and as a customer.

Schemathesis reads the document the app serves (in-process, through WSGI) and, for each
operation, sends requests that fit it (positive) and requests that break it (negative), as a
logged-in admin and as a logged-in customer, on the harness's real PostgreSQL and Redis. Every
answer must hold to the document (status code, content type, headers, body schema), valid input
must not be refused with a status the document does not allow, invalid input must be refused,
nothing may be a 5xx, and every 4xx must be ``application/problem+json``.

The catalogue holds the demo products and there are orders, invoices (paid in part, reversed),
payments, a ledger transaction crediting the customer's wallet, a second customer, a seller
and an import, so most valid requests take their path ids from real rows and the fuzzer gets
past the 404s. The examples in the document (an order
against the demo catalogue) are sent as they are. Operations that end the caller's session
(logout) use a throwaway login per request, so the rest of the run is not a string of 401s;
links from a listing that name a caller act on another user instead.

Bounded: ``EXAMPLES`` cases per operation, role and mode, derandomized (the same cases on every
run), no shrinking; ``LAPAK_TEST_FUZZ_EXAMPLES=200`` digs deeper by hand.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import NO_FEEDBACK
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from app.http import PROBLEM_MIMETYPE
from modules.marketplace.api import EXAMPLE_ORDER
from modules.marketplace.demo import DEMO_PRODUCTS, demo_product_id, load_demo
from modules.user.services import create_user
from tests.conftest import base_config, reset_data
from tests.modules.conftest import PASSWORD, bearer
from tests.modules.fetch.feedserver import FIXTURE, FeedServer, fetch_env, running, serve
from tests.servers import Services

EXAMPLES = int(os.environ.get("LAPAK_TEST_FUZZ_EXAMPLES", "25"))
ROLES = ("admin", "customer")
API = "/api/v1"

#: Operations that end the caller's session: each request logs a throwaway user in first.
ENDS_THE_SESSION = {("POST", f"{API}/auth/logout")}


def problem_json_for_every_4xx(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is RFC 9457 problem+json, whatever the document says."""
    if 400 <= response.status_code < 500:
        content_type = (response.headers.get("content-type") or [""])[0]
        assert content_type.split(";")[0].strip() == PROBLEM_MIMETYPE, (
            f"{response.status_code} answered as {content_type!r}, not {PROBLEM_MIMETYPE}"
        )
        body = response.json()
        assert body["status"] == response.status_code, body
    return None


#: What webargs' 422 says: the request broke a schema of the server that the document did not
#: show (a service's own 422 names its rule instead).
SCHEMA_REFUSAL = "One or more fields are invalid; see errors."


def valid_input_is_refused_only_for_rules_the_document_cannot_state(
    ctx: Any, response: Any, case: Any
) -> bool | None:
    """Input that fits the document may still break a rule it cannot state (a product that
    does not exist, an email taken, an opaque cursor that was never issued): a 422 from a
    service, or the 400 of a bad cursor. Never a refusal by the server's own schemas, which
    the document mirrors."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code == 422:
        body = response.json()
        assert body.get("detail") != SCHEMA_REFUSAL, (
            f"the server's schema refused what the document allows: {body.get('errors')}"
        )
    if response.status_code == 400:
        body = response.json()
        assert body.get("type") == "urn:lapak:problem:invalid-cursor", body
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    problem_json_for_every_4xx,
    valid_input_is_refused_only_for_rules_the_document_cannot_state,
]
#: positive_data_acceptance's statuses, plus the two refusals the check above narrows down.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "422", "429"]
            }
        }
    }
)


# -- known defects that other branches of issue 10 fix ---------------------------------------------
#
# Each entry is one finding of this gate whose fix belongs to another part of issue 10 (named in
# ``owner``). A case it matches is sent but not judged. The lead empties this list after merging
# those branches: the gate must then pass with no entry left.


@dataclass(frozen=True)
class KnownDefect:
    owner: str
    operation: str  # "METHOD /path" as in the document
    what: str
    matches: Callable[[Any, Any], bool] = field(repr=False)


def _problem(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


KNOWN_DEFECTS_FIXED_ELSEWHERE: list[KnownDefect] = []


def known_defect(case: Any, response: Any) -> KnownDefect | None:
    label = f"{case.method.upper()} {case.path}"
    return next(
        (
            defect
            for defect in KNOWN_DEFECTS_FIXED_ELSEWHERE
            if defect.operation in (label, "*") and defect.matches(case, response)
        ),
        None,
    )


# -- the app under test, with its seed data ------------------------------------------------------


@dataclass
class Seeds:
    """Ids of real rows, by path parameter name, and a token per role."""

    ids: dict[str, list[str]]
    tokens: dict[str, str]
    throwaway: dict[str, str]  # role -> email of a user who may be logged out
    callers: set[str]  # the ids of the users whose tokens the run uses


@dataclass
class Site:
    app: Flask
    client: FlaskClient
    seeds: Seeds
    schema: Any
    findings: dict[str, list[str]] = field(default_factory=dict)
    answered: Counter[tuple[str, int]] = field(default_factory=Counter)  # (role, status)


@pytest.fixture(scope="module")
def site(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running(FeedServer()) as feed:
        feed.routes["/list"] = serve(FIXTURE.read_bytes())
        config = base_config(services, tmp_path_factory.mktemp("fuzz") / "instance")
        config["module_packages"] = ("modules",)  # the product, not the sample modules
        config["module_env"] = {
            **config["module_env"],
            **fetch_env(feed),
            "fetch_default_source": "feed",
            "fetch_url_hosts": "",  # no ad-hoc URLs: the fuzzer must not aim the app anywhere
            # The event stream ends after a second, so that its answer can be read whole.
            "live_stream_max_seconds": "1",
        }
        app = create_app(config)
        try:
            client = app.test_client()
            seeds = seed(app, client)
            schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app, config=CONFIG)
            yield Site(app, client, seeds, schema)
        finally:
            app.extensions["lapak.jobs"].wait_embedded()
            app.extensions["lapak.db"].dispose()
            reset_data(services)


def seed(app: Flask, client: FlaskClient) -> Seeds:
    with app.app_context():
        load_demo()
        users = {
            name: create_user(f"fuzz.{name}@example.test", role=role, password=PASSWORD)
            for name, role in (
                ("admin", "admin"),
                ("customer", "customer"),
                ("other", "customer"),
                ("seller", "seller"),
                ("admin.throwaway", "admin"),
                ("customer.throwaway", "customer"),
            )
        }
        user_ids = {name: str(user.uuid) for name, user in users.items()}
    tokens = {role: token(client, f"fuzz.{role}@example.test") for role in ROLES}
    customer, admin = bearer(tokens["customer"]), bearer(tokens["admin"])

    def place(body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"{API}/marketplace/orders", json=body, headers=customer)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    placed = [
        place(EXAMPLE_ORDER),
        place({**EXAMPLE_ORDER, "payment": {"method": "bank_transfer", "amount": "1000"}}),
        place(EXAMPLE_ORDER),
    ]
    cancelled = client.post(f"{API}/marketplace/orders/{placed[2]['order']['id']}/cancel",
                            headers=customer)  # fmt: skip
    assert cancelled.status_code == 200, cancelled.get_json()
    detail = client.get(f"{API}/marketplace/orders/{placed[2]['order']['id']}", headers=customer)
    invoices = [p["invoice"]["id"] for p in placed] + [
        invoice["id"] for invoice in detail.get_json()["invoices"]
    ]
    upload = client.post(
        f"{API}/users/imports",
        data={"file": (io.BytesIO(b"email,name\nnew.one@example.test,New One\n"), "users.csv")},
        headers=admin,
    )
    assert upload.status_code == 202, upload.get_json()
    credited = client.post(
        f"{API}/ledger/transactions",
        json={"operation": "CREDIT_ADD", "nonce": "fuzz-seed", "currency": "IDR",
              "holder": user_ids["customer"], "amount": "100.00"},
        headers=admin,
    )  # fmt: skip
    assert credited.status_code == 201, credited.get_json()
    # Port 9 (discard): nothing listens, so a delivery the fuzzer causes reaches nobody.
    endpoint = client.post(f"{API}/webhooks/endpoints", json={"url": "http://127.0.0.1:9/"},
                           headers=admin)  # fmt: skip
    assert endpoint.status_code == 201, endpoint.get_json()
    ping = client.post(f"{API}/webhooks/endpoints/{endpoint.get_json()['id']}/test", headers=admin)
    assert ping.status_code == 202, ping.get_json()
    api_key = client.post(f"{API}/auth/api-keys", json={"name": "fuzz", "scopes": ["orders:read"]},
                          headers=admin)  # fmt: skip
    assert api_key.status_code == 201, api_key.get_json()
    return Seeds(
        ids={
            "product_id": [str(demo_product_id(name)) for name, *_ in DEMO_PRODUCTS],
            "order_id": [p["order"]["id"] for p in placed],
            "invoice_id": invoices,
            "payment_id": [p["payment"]["id"] for p in placed],
            # Never the callers themselves: deactivating them would end the run's sessions.
            "user_id": [user_ids["other"], user_ids["seller"]],
            "seller_id": [user_ids["seller"]],
            "job_id": [upload.get_json()["id"]],
            # The customer's wallet first: the customer may read it, the platform's not.
            "transaction_id": [credited.get_json()["id"]],
            "account_id": [entry["account"] for entry in reversed(credited.get_json()["entries"])],
            "endpoint_id": [endpoint.get_json()["id"]],
            "delivery_id": [ping.get_json()["id"]],
            "base": ["IDR"],
            "quote": ["USD"],
            "key_id": [api_key.get_json()["id"]],  # the admin's own
        },
        tokens=tokens,
        throwaway={role: f"fuzz.{role}.throwaway@example.test" for role in ROLES},
        callers={user_ids[role] for role in ROLES},
    )


def token(client: FlaskClient, email: str, address: str = "127.0.0.1") -> str:
    response = client.post(
        f"{API}/auth/login",
        json={"email": email, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": address},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


# -- what the document promises, checked before the fuzzer changes the data -------------------


def test_the_gate_covers_every_operation_of_the_document(site: Site) -> None:
    labels = {operation.label for operation in operations(site)}

    assert len(labels) >= 35
    assert f"POST {API}/marketplace/orders" in labels
    assert f"POST {API}/auth/logout" in labels


def test_the_documented_example_order_is_placed_against_the_demo_catalogue(site: Site) -> None:
    response = site.client.post(
        f"{API}/marketplace/orders",
        json=EXAMPLE_ORDER,
        headers=bearer(site.seeds.tokens["customer"]),
    )

    assert response.status_code == 201, response.get_json()
    ordered = [line["product"] for line in response.get_json()["order"]["lines"]]
    assert ordered == [str(demo_product_id("BANDENG")), str(demo_product_id("LELE"))]


def test_paying_a_reversed_invoice_is_the_409_the_document_declares(site: Site) -> None:
    reversed_invoice = site.seeds.ids["invoice_id"][2]  # the cancelled order's invoice
    path = f"{API}/marketplace/invoices/{{invoice_id}}/payments"

    response = site.client.post(
        path.format(invoice_id=reversed_invoice),
        json={"method": "cash"},
        headers=bearer(site.seeds.tokens["customer"]),
    )

    assert response.status_code == 409, response.get_json()
    assert response.content_type == PROBLEM_MIMETYPE
    assert response.get_json()["payment_state"] == "reversed"
    declared = site.client.get(f"{API}/openapi.json").get_json()["paths"][path]["post"]
    assert "409" in declared["responses"]


def test_a_body_the_document_calls_optional_may_be_left_out(site: Site) -> None:
    admin = bearer(site.seeds.tokens["admin"])
    product = site.seeds.ids["product_id"][0]

    sync = site.client.post(f"{API}/marketplace/products/sync", headers=admin)
    patch = site.client.patch(f"{API}/marketplace/products/{product}", headers=admin)

    assert sync.status_code == 202, sync.get_json()
    assert patch.status_code == 200, patch.get_json()
    spec = site.client.get(f"{API}/openapi.json").get_json()
    for path, method in (("/products/sync", "post"), ("/products/{product_id}", "patch")):
        assert spec["paths"][f"{API}/marketplace{path}"][method]["requestBody"]["required"] is False


def test_every_request_example_of_the_document_is_accepted_as_it_is(site: Site) -> None:
    """Sent by the role it is written for (an order by a customer, a product by an admin, a
    seller's own profile by a seller)."""
    spec = site.client.get(f"{API}/openapi.json").get_json()
    tokens = {**site.seeds.tokens, "seller": token(site.client, "fuzz.seller@example.test")}
    answers: dict[str, list[tuple[int, str]]] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" not in media:
                continue
            url = path.format(**{name: ids[0] for name, ids in site.seeds.ids.items()})
            label = f"{method.upper()} {path}"
            for role in ("customer", "admin", "seller"):
                response = site.client.open(url, method=method.upper(), json=media["example"],
                                            headers=bearer(tokens[role]))  # fmt: skip
                problem = response.get_json(silent=True) or {}
                answers.setdefault(label, []).append((response.status_code, problem.get("type")))
    # Only what an example cannot know may refuse it: who logs in, a row that exists already or
    # a state it is not in (409), a deployment's setting (sellers' sign-up closed, the default).
    refused = {
        label: statuses
        for label, statuses in answers.items()
        if not any(_accepted(status, kind) for status, kind in statuses)
    }
    assert refused == {}, answers
    assert len(answers) >= 6, answers


_SETTING_REFUSALS = {"urn:lapak:problem:seller-sign-up-closed"}


def _accepted(status: int, problem_type: str | None) -> bool:
    return status < 400 or status == 409 or problem_type in _SETTING_REFUSALS


@pytest.mark.parametrize("flag", [0, 1, "yes", "true"])
def test_a_json_boolean_is_true_or_false_as_the_document_says(site: Site, flag: Any) -> None:
    admin = bearer(site.seeds.tokens["admin"])
    product = site.seeds.ids["product_id"][0]

    answers = [
        site.client.patch(f"{API}/marketplace/products/{product}", json={"active": flag},
                          headers=admin),
        site.client.patch(f"{API}/users/{site.seeds.ids['user_id'][0]}", json={"active": flag},
                          headers=admin),
        site.client.post(f"{API}/marketplace/products", json={"name": "X", "list_price": "1",
                         "active": flag}, headers=admin),
    ]  # fmt: skip

    assert [a.status_code for a in answers] == [422, 422, 422], [a.get_json() for a in answers]


# -- the gate ----------------------------------------------------------------------------------


def cases(site: Site, operation: Any, role: str, mode: GenerationMode) -> st.SearchStrategy:
    """Generated cases; positive ones also with real ids and the document's own examples."""
    headers = bearer(site.seeds.tokens[role])
    generated = operation.as_strategy(generation_mode=mode, headers=headers)
    if not mode.is_positive:
        return generated
    names = [p.name for p in operation.path_parameters]
    choices: list[st.SearchStrategy] = [generated]
    if names and all(name in site.seeds.ids for name in names):
        real_ids = st.fixed_dictionaries(
            {name: st.sampled_from(site.seeds.ids[name]) for name in names}
        )
        with_real_ids = real_ids.flatmap(
            lambda ids: operation.as_strategy(
                generation_mode=mode, headers=headers, path_parameters=ids
            )
        )
        choices += [with_real_ids, with_real_ids]  # two in three: past the 404s
    for example in site.schema.get_strategies_from_examples(operation):
        choices.append(example.map(lambda case: with_headers(case, headers)))
    return st.one_of(*choices)


def with_headers(case: Any, headers: dict[str, str]) -> Any:
    case.headers = {**(case.headers or {}), **headers}
    return case


def fuzz(site: Site, operation: Any, role: str, mode: GenerationMode) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        # Slow or filtered generation on a busy CI machine is no failure of the API.
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases(site, operation, role, mode))
    def check(case: Any) -> None:
        judge(site, role, case)

    check()


def judge(site: Site, role: str, case: Any) -> None:
    """Send ``case`` as ``role`` and hold the answer to the document (known defects aside)."""
    if (case.method.upper(), case.path) in ENDS_THE_SESSION:
        # From another address: the fuzzer's own failed logins may have locked this one.
        fresh = token(site.client, site.seeds.throwaway[role], address="127.0.0.2")
        with_headers(case, bearer(fresh))
    response = case.call()
    site.answered[role, response.status_code] += 1
    defect = known_defect(case, response)
    if defect is not None:
        label = f"{case.method.upper()} {case.path}"
        site.findings.setdefault(f"{defect.owner}: {defect.what}", []).append(label)
        return
    case.validate_response(response, checks=CHECKS)


def boundaries(site: Site, operation: Any, role: str) -> None:
    """Schemathesis' coverage phase: each constraint's edges (too long, missing, wrong type,
    just inside and just outside a pattern or range), positive and negative, once each."""
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=site.schema.config.generation_for(operation=operation, phase="coverage"),
        auth_storage=None,
        override=Override(headers=bearer(site.seeds.tokens[role])),
        feedback=NO_FEEDBACK,
    )
    for case in generator:
        judge(site, role, case)


def operations(site: Site) -> Iterator[Any]:
    for result in site.schema.get_all_operations():
        yield result.ok()


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_holds_to_the_document(site: Site, role: str) -> None:
    failures: dict[str, str] = {}
    for operation in operations(site):
        runs: dict[str, Callable[[], None]] = {
            "boundaries": partial(boundaries, site, operation, role),
            "positive": partial(fuzz, site, operation, role, GenerationMode.POSITIVE),
            "negative": partial(fuzz, site, operation, role, GenerationMode.NEGATIVE),
        }
        for name, run in runs.items():
            try:
                run()
            except Unsatisfiable:
                assert name == GenerationMode.NEGATIVE.value, operation.label  # nothing to break
            except FailureGroup as group:
                failures[f"{operation.label} ({name})"] = str(group)
            except AssertionError as error:
                failures[f"{operation.label} ({name})"] = str(error)
    statuses = sorted((status, n) for (who, status), n in site.answered.items() if who == role)
    print(f"\n{role}: {sum(n for _, n in statuses)} requests, by status: {dict(statuses)}")
    for finding, labels in site.findings.items():
        print(f"known, fixed elsewhere: {finding}: {len(labels)} case(s), e.g. {labels[0]}")
    report = "\n\n".join(f"== {name}\n{text[:3000]}" for name, text in failures.items())
    assert not failures, f"{len(failures)} operation(s) broke the document:\n\n{report}"


@pytest.mark.parametrize("role", ROLES)
def test_following_the_links_keeps_to_the_document(site: Site, role: str) -> None:
    """Scenarios that follow the document's links (a listed product into an order line, a
    placed order to its invoice and payment, ...), every step held to the same checks."""
    headers = bearer(site.seeds.tokens[role])
    steps: Counter[tuple[str, int]] = Counter()

    class Scenario(site.schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # A link from the user list may name a caller: act on another user instead, or the
            # rest of the scenario would run logged out.
            if case.path_parameters and case.path_parameters.get("user_id") in site.seeds.callers:
                case.path_parameters = {
                    **case.path_parameters,
                    "user_id": site.seeds.ids["user_id"][0],
                }
            if (case.method.upper(), case.path) in ENDS_THE_SESSION:
                throwaway = token(site.client, site.seeds.throwaway[role], address="127.0.0.2")
                with_headers(case, bearer(throwaway))
            else:
                with_headers(case, headers)

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            steps[f"{case.method.upper()} {case.path}", response.status_code] += 1
            if known_defect(case, response) is None:
                case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    run_state_machine_as_test(
        Scenario,
        settings=settings(
            max_examples=max(EXAMPLES // 2, 2),
            stateful_step_count=10,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"\n{role}: {sum(steps.values())} steps; (operation, status): count")
    for (label, status), count in sorted(steps.items()):
        print(f"  {label} {status}: {count}")
