"""Template filters built in to every template (settings TEMPLATES "builtins"):
`{{ amount|money:currency }}` and `{{ moment|when }}`; see partners/formatting.py."""

from django import template

from partners.formatting import format_money, format_when

register = template.Library()


@register.filter
def money(amount, currency=""):
    return format_money(amount, currency)


@register.filter
def when(moment):
    return format_when(moment)
