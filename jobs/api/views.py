"""REST API for jobs: their state, for the pages that poll it and for scripts."""

from rest_framework import permissions, viewsets

from jobs.api.serializers import JobSerializer
from jobs.models import Job


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Your own jobs (staff see all)."""

    serializer_class = JobSerializer
    permission_classes = [permissions.IsAuthenticated]
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Job.objects.none()
        jobs = Job.objects.all()
        if not self.request.user.is_staff:
            jobs = jobs.filter(user=self.request.user)
        return jobs
