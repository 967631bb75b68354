from django.urls import path

from . import views

app_name = "payments"
urlpatterns = [
    path("settings/", views.PaymentSettingsView.as_view(), name="settings"),
    path("drift/", views.DriftReportView.as_view(), name="drift"),
    path("export.csv", views.PaymentExportView.as_view(), name="export"),
    path("<int:pk>/delete/", views.PaymentDeleteView.as_view(), name="delete"),
    path("invoice/<int:invoice_pk>/record/", views.PaymentRecordView.as_view(), name="record"),
    path("invoice/<int:invoice_pk>/move/", views.PaymentsMoveView.as_view(), name="move"),
]
