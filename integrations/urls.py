from django.urls import path

from . import views

app_name = "integrations"
urlpatterns = [
    path("autotask/connect/", views.AutotaskConnectView.as_view(), name="autotask-connect"),
    path("autotask/edit/", views.AutotaskEditView.as_view(), name="autotask-edit"),
    path("autotask/test/", views.AutotaskTestView.as_view(), name="autotask-test"),
    path("autotask/retry/", views.AutotaskRetryView.as_view(), name="autotask-retry"),
    path(
        "autotask/disconnect/", views.AutotaskDisconnectView.as_view(), name="autotask-disconnect"
    ),
]
