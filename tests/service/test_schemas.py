"""The order body's validation rules, field by field (contract: Bodies, Clarifications)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.service.schemas import (
    COUNTRY_PATTERN,
    NO_CONTROL_PATTERN,
    ErrorBody,
    OrderCreate,
    OrderV1,
)

PRODUCT = "0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77"


def body(**changes: Any) -> dict[str, Any]:
    """A valid body with *changes* applied (``address__city=...`` reaches into the address)."""
    data: dict[str, Any] = {
        "productId": PRODUCT,
        "quantity": 3,
        "address": {"street": "1 Rue de Rivoli", "city": "Paris", "country": "fr"},
    }
    for key, value in changes.items():
        target, _, name = key.rpartition("__")
        holder = data["address"] if target == "address" else data
        if value is DELETE:
            del holder[name]
        else:
            holder[name] = value
    return data


DELETE = object()


def errors_of(data: Any) -> dict[str, list[str]]:
    """Field path -> error types, as the 400 handler will see them."""
    with pytest.raises(ValidationError) as info:
        OrderCreate.model_validate(data)
    out: dict[str, list[str]] = {}
    for error in info.value.errors():
        out.setdefault(".".join(str(p) for p in error["loc"]), []).append(error["type"])
    return out


def test_a_valid_body_is_accepted_and_the_country_upper_cased() -> None:
    order = OrderCreate.model_validate(body())
    assert order.product_id == uuid.UUID(PRODUCT)
    assert order.quantity == 3
    assert order.address.country == "FR"
    assert order.address.street == "1 Rue de Rivoli"


def test_the_body_parsed_from_json_text_behaves_the_same() -> None:
    """FastAPI validates json.loads() output (python mode); JSON mode must agree."""
    order = OrderCreate.model_validate_json(json.dumps(body(quantity=100)))
    assert order.quantity == 100


@pytest.mark.parametrize("quantity", [1, 2, 99, 100])
def test_quantity_bounds_are_inclusive(quantity: int) -> None:
    assert OrderCreate.model_validate(body(quantity=quantity)).quantity == quantity


@pytest.mark.parametrize(("given", "stored"), [(1.0, 1), (100.0, 100), (1e1, 10)])
def test_quantity_written_with_a_zero_fraction_is_that_integer(given: float, stored: int) -> None:
    """JSON has one number type; JSON Schema's "integer" includes 1.0, and so do we, so the
    published schema and the server agree (a fuzzer sends 100.0 as valid data)."""
    order = OrderCreate.model_validate_json(json.dumps(body(quantity=given)))
    assert order.quantity == stored and type(order.quantity) is int


@pytest.mark.parametrize(
    ("quantity", "error"),
    [
        (0, "greater_than_equal"),
        (-1, "greater_than_equal"),
        (101, "less_than_equal"),
        (10**20, "less_than_equal"),
        (101.0, "less_than_equal"),
        (0.0, "greater_than_equal"),
        (1.5, "int_type"),
        ("1", "int_type"),  # lax pydantic would coerce this: the contract refuses it
        (True, "int_type"),  # bool is an int subclass in Python: refused
        (False, "int_type"),
        (None, "int_type"),
        ([1], "int_type"),
        (float("nan"), "int_type"),
        (float("inf"), "int_type"),
    ],
)
def test_quantity_refuses_non_integers_and_out_of_range(quantity: Any, error: str) -> None:
    assert errors_of(body(quantity=quantity)) == {"quantity": [error]}


@pytest.mark.parametrize(
    "product",
    [
        "not-a-uuid",
        "",
        PRODUCT.replace("-", ""),  # 32 hex digits: pydantic's UUID would take it
        "{" + PRODUCT + "}",
        "urn:uuid:" + PRODUCT,
        PRODUCT + " ",
        PRODUCT[:-1] + "g",
        12345,
        None,
        True,
    ],
)
def test_product_id_must_be_a_canonical_uuid_string(product: Any) -> None:
    assert errors_of(body(productId=product)) == {"productId": ["value_error"]}


def test_product_id_accepts_upper_case_hex_and_any_version() -> None:
    assert OrderCreate.model_validate(body(productId=PRODUCT.upper())).product_id == uuid.UUID(
        PRODUCT
    )
    v7 = "01890a5d-ac96-774b-bcce-b302099a8057"
    assert OrderCreate.model_validate(body(productId=v7)).product_id == uuid.UUID(v7)


@pytest.mark.parametrize(
    ("field", "limit"),
    [("street", 200), ("city", 100)],
)
def test_text_fields_have_exact_length_limits(field: str, limit: int) -> None:
    ok = OrderCreate.model_validate(body(**{f"address__{field}": "é" * limit}))
    assert getattr(ok.address, field) == "é" * limit  # characters, not UTF-8 bytes
    assert errors_of(body(**{f"address__{field}": "x" * (limit + 1)})) == {
        f"address.{field}": ["string_too_long"]
    }
    assert errors_of(body(**{f"address__{field}": ""})) == {
        f"address.{field}": ["string_too_short"]
    }


@pytest.mark.parametrize("field", ["street", "city"])
@pytest.mark.parametrize(
    "bad", ["a\x00b", "line\nbreak", "tab\there", "\x1b[31m", "del\x7f", "c1\x85"]
)
def test_text_fields_refuse_control_characters(field: str, bad: str) -> None:
    """NUL would make PostgreSQL fail (a 500); newlines and escapes are injection vectors."""
    assert errors_of(body(**{f"address__{field}": bad})) == {f"address.{field}": ["value_error"]}


@pytest.mark.parametrize("field", ["street", "city"])
@pytest.mark.parametrize("bad", [12, None, True, ["a"], {"a": 1}])
def test_text_fields_refuse_non_strings(field: str, bad: Any) -> None:
    assert errors_of(body(**{f"address__{field}": bad})) == {f"address.{field}": ["string_type"]}


def test_lone_surrogates_are_refused() -> None:
    """json.loads accepts "\\ud800"; the database encoder would not (a 500)."""
    text = json.dumps(body()).replace('"1 Rue de Rivoli"', '"\\ud800"')
    data = json.loads(text)
    assert data["address"]["street"] == "\ud800"
    assert "address.street" in errors_of(data)


@pytest.mark.parametrize(
    ("country", "error"),
    [
        ("FRA", "string_too_long"),
        ("F", "string_too_short"),
        ("", "string_too_short"),
        ("F1", "value_error"),
        ("É€", "value_error"),
        ("ＦＲ", "value_error"),  # full-width letters are not ASCII letters
        ("F ", "value_error"),
        (33, "string_type"),
    ],
)
def test_country_must_be_two_ascii_letters(country: Any, error: str) -> None:
    assert errors_of(body(address__country=country)) == {"address.country": [error]}


@pytest.mark.parametrize(("given", "stored"), [("fr", "FR"), ("De", "DE"), ("US", "US")])
def test_country_is_upper_cased(given: str, stored: str) -> None:
    assert OrderCreate.model_validate(body(address__country=given)).address.country == stored


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"id": str(uuid.uuid4())}, "id"),
        ({"user_id": str(uuid.uuid4())}, "user_id"),
        ({"userId": str(uuid.uuid4())}, "userId"),
        ({"createdAt": "2020-01-01T00:00:00Z"}, "createdAt"),
        ({"role": "admin"}, "role"),
        ({"__proto__": {}}, "__proto__"),
    ],
)
def test_unknown_top_level_fields_are_refused(extra: dict[str, Any], path: str) -> None:
    """Mass assignment (OWASP API3): no field the client is not meant to set gets through."""
    assert errors_of({**body(), **extra}) == {path: ["extra_forbidden"]}


def test_unknown_address_fields_are_refused() -> None:
    data = body()
    data["address"]["zip"] = "75001"
    assert errors_of(data) == {"address.zip": ["extra_forbidden"]}


def test_snake_case_product_id_is_an_unknown_field_in_the_v1_body() -> None:
    data = body(productId=DELETE)
    data["product_id"] = PRODUCT
    assert errors_of(data) == {"productId": ["missing"], "product_id": ["extra_forbidden"]}


@pytest.mark.parametrize("missing", ["productId", "quantity", "address"])
def test_every_field_is_required(missing: str) -> None:
    assert errors_of(body(**{missing: DELETE})) == {missing: ["missing"]}


@pytest.mark.parametrize("missing", ["street", "city", "country"])
def test_every_address_field_is_required(missing: str) -> None:
    assert errors_of(body(**{f"address__{missing}": DELETE})) == {f"address.{missing}": ["missing"]}


@pytest.mark.parametrize("whole", [[], "order", 1, None, [body()]])
def test_the_body_must_be_an_object(whole: Any) -> None:
    assert list(errors_of(whole)) == [""]


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE orders; --",
        "1' OR '1'='1",
        "Robert'); DELETE FROM users WHERE ('1'='1",
        '" UNION SELECT password FROM users --',
        "%' AND 1=0 UNION ALL SELECT NULL--",
        "\\'; SELECT pg_sleep(5); --",
    ],
)
def test_sql_looking_text_is_valid_and_kept_verbatim(text: str) -> None:
    order = OrderCreate.model_validate(body(address__street=text, address__city=text[:100]))
    assert order.address.street == text
    assert order.address.city == text[:100]


def test_published_patterns_agree_with_the_validators() -> None:
    """The JSON Schema the OpenAPI document publishes must accept exactly what we accept."""
    schema = OrderCreate.model_json_schema()
    address = schema["$defs"]["Address"]["properties"]
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Address"]["additionalProperties"] is False
    assert schema["properties"]["quantity"] == {
        "maximum": 100,
        "minimum": 1,
        "title": "Quantity",
        "type": "integer",
    }
    assert schema["properties"]["productId"]["format"] == "uuid"
    assert address["street"]["maxLength"] == 200 and address["street"]["minLength"] == 1
    assert address["city"]["maxLength"] == 100 and address["city"]["minLength"] == 1
    assert address["country"]["pattern"] == COUNTRY_PATTERN
    assert (address["country"]["minLength"], address["country"]["maxLength"]) == (2, 2)
    # Python's re (what schemathesis uses) reads the \uXXXX escapes like ECMA-262 does.
    control = re.compile(NO_CONTROL_PATTERN)
    assert control.search("plain text é 中")
    for bad in ["a\x00", "a\nb", "\x7f", "\x9f"]:
        assert not control.search(bad)


def test_order_v1_serialises_camel_case_with_rfc3339_utc() -> None:
    from datetime import UTC, datetime

    order = OrderV1(
        id=uuid.UUID(int=1),
        product_id=uuid.UUID(PRODUCT),
        quantity=2,
        address=OrderCreate.model_validate(body()).address,
        created_at=datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC),
    )
    assert json.loads(order.model_dump_json()) == {
        "id": "00000000-0000-0000-0000-000000000001",
        "productId": PRODUCT,
        "quantity": 2,
        "address": {"street": "1 Rue de Rivoli", "city": "Paris", "country": "FR"},
        "createdAt": "2026-01-31T12:00:00.123456Z",
    }


def test_error_schema_matches_the_bodies_the_handlers_send() -> None:
    """``details`` is optional and, when present, maps paths to lists of strings."""
    schema = ErrorBody.model_json_schema(mode="serialization")
    assert schema["required"] == ["error", "requestId"]
    assert schema["properties"]["details"]["type"] == "object"
    assert schema["properties"]["details"]["additionalProperties"] == {
        "items": {"type": "string"},
        "type": "array",
    }
