from django.urls import path

from . import views

app_name = "invoices"
urlpatterns = [
    path("", views.InvoiceListView.as_view(), name="list"),
    path("new/", views.InvoiceCreateView.as_view(), name="create"),
    path("export.csv", views.InvoiceExportView.as_view(), name="export"),
    path("<int:pk>/", views.InvoiceDetailView.as_view(), name="detail"),
    path("<int:pk>/pdf/", views.InvoicePdfView.as_view(), name="pdf"),
    path("<int:pk>/archive/", views.InvoiceArchiveView.as_view(), name="archive"),
    path(
        "customers/<int:customer_pk>/new-invoice/",
        views.InvoiceCreateView.as_view(),
        name="customer-invoice-create",
    ),
]
