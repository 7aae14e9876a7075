from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="webapp/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("webapp.views.home")),
    path("", include("webapp.views.runs")),
    path("", include("webapp.views.side_by_side")),
    path("", include("webapp.views.studies")),
    path("", include("webapp.views.review")),
    path("", include("webapp.views.evaluations")),
    path("", include("webapp.views.queues")),
    path("api/", include("webapp.views.api")),
]

handler500 = "webapp.api_errors.server_error"
