from django.urls import path

from . import views

app_name = "sync"
urlpatterns = [
    path("", views.SyncHistoryView.as_view(), name="history"),
    path("<int:pk>/", views.SyncRunDetailView.as_view(), name="run-detail"),
]
