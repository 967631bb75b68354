"""List filters of the partners list (ops/admin.py), on a `partner_overview()` queryset."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q

from integrations.models import AutotaskConnection

from .selectors import PROBLEMS


class HasOpenProblemsFilter(admin.SimpleListFilter):
    title = "open problems"
    parameter_name = "problems"

    def lookups(self, request, model_admin):
        return [
            ("any", "Has open problems"),
            ("connection", "Connection needs attention"),
            ("writeback", "Failed write-backs"),
            ("runs", "Runs failed in the last day"),
            ("events", "Parked payment events"),
            ("none", "No open problems"),
        ]

    def queryset(self, request, queryset):
        match self.value():
            case "any":
                return queryset.filter(PROBLEMS)
            case "connection":
                return queryset.filter(connection_status=AutotaskConnection.Status.NEEDS_ATTENTION)
            case "writeback":
                return queryset.filter(failed_writebacks__gt=0)
            case "runs":
                return queryset.filter(failed_runs_day__gt=0)
            case "events":
                return queryset.filter(parked_events__gt=0)
            case "none":
                # Spelled out: NOT (status = 'needs_attention') is NULL without a connection.
                return queryset.filter(
                    Q(connection_status__isnull=True)
                    | ~Q(connection_status=AutotaskConnection.Status.NEEDS_ATTENTION),
                    failed_writebacks=0,
                    failed_runs_day=0,
                    parked_events=0,
                )
        return queryset


class ConnectionStatusFilter(admin.SimpleListFilter):
    title = "Autotask connection"
    parameter_name = "connection"

    def lookups(self, request, model_admin):
        return [*AutotaskConnection.Status.choices, ("none", "Never connected")]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(connection_id__isnull=True)
        if self.value():
            return queryset.filter(connection_status=self.value())
        return queryset


class SchedulesPausedFilter(admin.SimpleListFilter):
    title = "schedules"
    parameter_name = "paused"

    def lookups(self, request, model_admin):
        return [("yes", "Paused"), ("no", "Running")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(schedules_paused=self.value() == "yes")
        return queryset
