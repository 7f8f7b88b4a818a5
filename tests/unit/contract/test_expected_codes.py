"""expected_codes as both HAProxy's checks and the agent's UDP probes read them."""

import pytest

from amphorae.contract.expected_codes import parse_expected_codes


@pytest.mark.parametrize(("text", "codes"), [
    (None, (200,)),
    ("", (200,)),
    ("200", (200,)),
    ("200,202", (200, 202)),
    ("202, 200 ,200", (200, 202)),
    ("200-204", (200, 201, 202, 203, 204)),
    ("301-302,200,300-301", (200, 300, 301, 302)),
    ("100-101,599", (100, 101, 599)),
])
def test_parse_expected_codes(text: str | None, codes: tuple[int, ...]) -> None:
    assert parse_expected_codes(text) == codes


@pytest.mark.parametrize("text", ["20", "2000", "abc", "200,", "204-200", "200-", "099",
                                  "600", "200;201", "200-204-206", "2O0"])
def test_parse_expected_codes_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_expected_codes(text)
