"""Serializers of the jobs API (other apps' APIs answer with a job too)."""

from rest_framework import serializers

from jobs.models import Job
from jobs.sending import SEND_KEY


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

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # The task the job records before sending it (`jobs.sending`: name, arguments,
        # Celery task id) is plumbing, not a parameter: generations in the public gallery
        # answer anonymous visitors with their job.
        if isinstance(data.get("params"), dict):
            data["params"] = {k: v for k, v in data["params"].items() if k != SEND_KEY}
        return data
