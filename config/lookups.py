"""`field__any=[…]`: membership in a list as one array parameter on PostgreSQL.

`field__in=[…]` renders one placeholder per value and prepares each value through the field in
Python: for the sync's 500-id pages that was a few milliseconds per query, three queries a page
(issue 19, bench/sync_initial.py). `= ANY(%s)` sends the list as one parameter (psycopg2 adapts
it in C) and PostgreSQL plans it as it plans an IN list. Integer fields only; a list of ints is
sent as it is, anything else is prepared as IN prepares it. Other databases (the SQLite
development path) get the plain IN list.
"""

from django.db import models
from django.db.models.lookups import In


@models.IntegerField.register_lookup
class AnyOf(In):
    lookup_name = "any"

    def get_prep_lookup(self):
        values = list(self.rhs)
        if all(type(v) is int for v in values):
            return values  # the fast path: nothing to prepare
        return [v for v in super().get_prep_lookup() if v is not None]  # as IN prepares them

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        # An empty list matches nothing, as an empty IN does (no array of unknown type sent).
        if not self.rhs:
            return "FALSE", []
        return f"{lhs} = ANY(%s)", [*lhs_params, list(self.rhs)]
