"""URLs of the Django example."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from integrations.django_app import views

urlpatterns = [
    path("login", views.login_view),
    path("logout", views.logout_view),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.logout_link, name="logout"),
    path("console/pods/new/", views.new_pod),
    path("pods", views.pod_collection),
    path("pods/<str:pod_id>", views.pod_detail),
    path("pods/<str:pod_id>/start", views.start_pod),
    path("pods/<str:pod_id>/stop", views.stop_pod),
    path("pods/<str:pod_id>/restart", views.restart_pod),
]
