"""Mounted at /invoices/customers/ (config/urls.py), where these pages have always been."""

from django.urls import path

from . import views

app_name = "customers"
urlpatterns = [
    path("<int:pk>/archive/", views.CustomerArchiveView.as_view(), name="archive"),
    path("new/", views.CustomerCreateView.as_view(), name="create"),
    path("<int:pk>/", views.CustomerDetailView.as_view(), name="detail"),
    path("export.csv", views.CustomerExportView.as_view(), name="export"),
]
