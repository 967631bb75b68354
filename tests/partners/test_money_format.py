"""format_money (partners/formatting.py) with the parsed locale cached per name (issue 19):
the same text as before, and a changed PAYSYNC_MONEY_LOCALE is honoured at once."""

from decimal import Decimal

from django.test import override_settings

from partners.formatting import format_money


def test_amounts_read_as_the_locale_writes_them():
    assert format_money(Decimal("2013.62"), "USD") == "$2,013.62"
    assert format_money(Decimal("2013.62"), "eur") == "€2,013.62"
    assert format_money(Decimal("2013.62"), "JPY") == "¥2,014"
    assert format_money(Decimal("2013.62"), "") == "2,013.62"
    assert format_money(None, "USD") == "—"


def test_another_locale_setting_applies_without_a_restart():
    assert format_money(Decimal("2013.62"), "EUR") == "€2,013.62"
    with override_settings(PAYSYNC_MONEY_LOCALE="de_DE"):
        assert format_money(Decimal("2013.62"), "EUR") == "2.013,62\xa0€"
    assert format_money(Decimal("2013.62"), "EUR") == "€2,013.62"
