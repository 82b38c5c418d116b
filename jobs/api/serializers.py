"""Serializers of the jobs API (other apps' APIs answer with a job too)."""

from rest_framework import serializers

from jobs.models import Job


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "stage",
            "done",
            "total",
            "progress",
            "eta_seconds",
            "error",
            "params",
            "result",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]
