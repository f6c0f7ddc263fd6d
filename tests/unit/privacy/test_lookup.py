"""The lookup hashes: one number or address however it is written, keyed, never the value."""

from __future__ import annotations

import hashlib

from notifier.privacy import lookup

KEY = b"a key of the test"


def test_a_number_is_one_hash_however_the_customer_writes_it() -> None:
    written = ("+886912345678", "0912-345-678", "0912 345 678", "+886 912 345 678")
    assert len({lookup.phone_hash(w, KEY) for w in written}) == 1
    assert lookup.phone_hash("0912345679", KEY) != lookup.phone_hash("0912345678", KEY)


def test_an_email_is_one_hash_in_any_case_and_never_a_phones() -> None:
    assert lookup.email_hash(" A@Example.COM ", KEY) == lookup.email_hash("a@example.com", KEY)
    assert lookup.query_hashes("a@example.com", KEY) == (
        None,
        lookup.email_hash("a@example.com", KEY),
    )
    assert lookup.query_hashes("0912-345-678", KEY)[0] == lookup.phone_hash("+886912345678", KEY)


def test_the_hash_is_keyed_and_is_not_a_plain_digest_of_the_number() -> None:
    keyed = lookup.phone_hash("+886912345678", KEY)
    assert keyed != lookup.phone_hash("+886912345678", b"another key")
    assert keyed != hashlib.sha256(b"+886912345678").hexdigest()
    assert keyed is not None and "912345678" not in keyed


def test_what_is_neither_a_number_nor_an_address_has_no_hash() -> None:
    assert lookup.phone_hash("not a number", KEY) is None
    assert lookup.email_hash("nobody", KEY) is None
    assert lookup.query_hashes("SM12ab", KEY) == (None, None)  # a provider id, not a phone
