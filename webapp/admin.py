from django.contrib import admin

from webapp import models


@admin.register(models.Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("team", "user", "role")
    list_filter = ("role", "team")


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "created_at")
    list_filter = ("team",)


@admin.register(models.Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "algorithm", "status", "step", "total_steps", "queue", "host", "created_at")
    list_filter = ("status", "algorithm", "queue")
    search_fields = ("name",)
    raw_id_fields = ("parent", "study")


@admin.register(models.Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "created_at")


@admin.register(models.Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ("run", "step", "question_id", "mode", "context", "index", "reward", "length")
    list_filter = ("mode",)
    raw_id_fields = ("run",)


@admin.register(models.Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ("run", "step", "benchmark", "mode", "status")


admin.site.register(models.MetricPoint)
admin.site.register(models.Checkpoint)
admin.site.register(models.RunLog)
admin.site.register(models.EvalResult)
admin.site.register(models.Comment)
admin.site.register(models.Verdict)
admin.site.register(models.Activity)
admin.site.register(models.Tag)
admin.site.register(models.ApiToken)
admin.site.register(models.Worker)
