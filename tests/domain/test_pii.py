"""Masking contact data and addresses in analyst-facing text: what is masked, what is left alone."""

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbo_platform.domain.pii import EMAIL, IPV4, IPV6, PHONE, mask_pii, mask_pii_sql
from nbo_platform.duck import connect

PII = [
    "ana@example.com",
    "ana.b+1@mail.example.co.uk",
    "10.0.0.1",
    "2001:db8:85a3:0:0:8a2e:370:7334",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    "fe80::1ff:fe23:4567:890a",
    "::1",
    "+57 300 1234567",
    "+573001234567",
    "+1-202-555-0143",
    "+1 (202) 555-0143",
    "+44 20 7946 0958",
    "(300) 123-4567",
    "300.123.4567",
    "300-123-4567",
    "300 1234567",
]
NOT_PII = [
    "2025-06-02",
    "2025-06-02T10:00:00Z",
    "2025-06-02 10:00:00.123+00",
    "2025-06-02T10:00:00+05:30",
    "2025-06-02T10:00:00+0530",
    "02.06.2025",
    "2025/06/02",
    "10:00:00",
    "12,50 COP",
    "1.5",
    "-74.0512345",
    "12345678",
    "3001234567890",
    "TX-2026-0001",
    "n0123456789abcdef0123",
    "batch-0a1b2c3d4e5f60718293",
]


def masked_sql(values):
    con = connect()
    return [con.execute(f"SELECT {mask_pii_sql('?')}", [v]).fetchone()[0] for v in values]


@pytest.mark.parametrize("value", PII)
def test_no_raw_contact_data_emails_phones_and_ip_addresses_are_masked(value):
    text = f"line 3: expected 5 fields, found 6: 7,Ana,{value},x"
    assert value not in mask_pii(text)
    assert masked_sql([text]) == [mask_pii(text)]


@pytest.mark.parametrize("value", NOT_PII)
def test_no_raw_contact_data_dates_times_numbers_and_ids_are_left_alone(value):
    text = f"event_time: not a timestamp: {value}"
    assert mask_pii(text) == text
    assert masked_sql([text]) == [text]


@settings(max_examples=200, deadline=None)
@given(
    ip=st.ip_addresses(),
    digits=st.text("0123456789", min_size=7, max_size=12),
    sep=st.sampled_from([" ", "-", ".", ""]),
    user=st.from_regex(r"[a-z][a-z0-9._]{0,10}", fullmatch=True),
)
def test_no_raw_contact_data_any_address_or_international_number_is_masked(ip, digits, sep, user):
    phone = "+" + sep.join(re.findall(".{1,3}", digits))
    address = ip.compressed if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    for value in (address, phone, f"{user}@bank.example.com"):
        out = mask_pii(f"raw: {{'x': '{value}'}}")
        assert value not in out, (value, out)
    assert re.fullmatch(EMAIL, f"{user}@bank.example.com")
    assert re.fullmatch(IPV6 if ip.version == 6 else IPV4, address)
    assert re.fullmatch(PHONE, phone)
