from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("webapp.views.accounts")),
    path("admin/", admin.site.urls),
    path("", include("webapp.views.home")),
    path("", include("webapp.views.teams")),
    path("", include("webapp.views.datasets")),
    path("", include("webapp.views.runs")),
    path("", include("webapp.views.side_by_side")),
    path("", include("webapp.views.studies")),
    path("", include("webapp.views.review")),
    path("", include("webapp.views.evaluations")),
    path("", include("webapp.views.queues")),
    path("api/", include("webapp.views.api")),
]

handler500 = "webapp.http.api_errors.server_error"
