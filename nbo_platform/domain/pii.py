"""Contact data and network addresses in free text: found and masked, for anything analysts read.

Error texts, quarantine reasons and raw rejected records can carry a customer's e-mail address, phone
number or IP address. Every analyst-facing copy of such text goes through :func:`mask_pii_sql` (in
the warehouse's views) or :func:`mask_pii` (log lines and errors the pipeline writes itself). The
patterns are RE2's (DuckDB's and Python's ``re`` agree on this subset) and are applied in order:
e-mail, IPv6, IPv4, then phone numbers in their common written forms. Dates, times, decimals and bare
digit runs (ids) are not phone numbers: a phone is written with a leading ``+`` or in groups of three
or four digits (``(300) 123-4567``, ``300.123.4567``, ``300 1234567``).
"""

from __future__ import annotations

import re

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_H = "[0-9A-Fa-f]{1,4}"
# Full (eight groups) or compressed with "::" (which no date or time contains).
IPV6 = rf"(?:{_H}:){{7}}{_H}|(?:{_H}(?::{_H})*)?::(?:{_H}(?::{_H})*)?"
IPV4 = r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b"
PHONE = (
    r"\+[0-9](?:[ .()-]{0,2}[0-9]){6,14}"  # international, 7-15 digits: +57 300 1234567, +1 (202) 555-0143
    r"|(?:\([0-9]{3}\)|\b[0-9]{3})[ .-]?[0-9]{3,4}[ .-][0-9]{4}\b"  # (300) 123-4567, 300.123.4567
    r"|\b[0-9]{3}[ .-][0-9]{7}\b"  # 300 1234567
)
PATTERNS = ((EMAIL, "<email>"), (IPV6, "<ip>"), (IPV4, "<ip>"), (PHONE, "<phone>"))


def mask_pii_sql(column: str) -> str:
    """SQL masking e-mails, IP addresses and phone numbers in a text column."""
    out = column
    for pattern, label in PATTERNS:
        out = f"regexp_replace({out}, '{pattern}', '{label}', 'g')"
    return out


def mask_pii(text: str | None) -> str | None:
    """The same masking in Python, for texts the pipeline logs or stores itself."""
    if text is None:
        return None
    for pattern, label in PATTERNS:
        text = re.sub(pattern, label, text)
    return text
