"""Admin actions ask for the model permission they exercise, not only staff status."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from generation.models import LoraCacheEntry
from jobs.models import Job
from retrieval.models import EmbeddingSpace


@pytest.fixture
def viewer(client):
    """A staff user who may only view the index spaces and the LoRA cache."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_embeddingspace", "view_loracacheentry"],
        )
    )
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_view_only_staff_cannot_rebuild_the_index(viewer):
    space = EmbeddingSpace.objects.create(key="k", embedder="minilm", model_id="m", dim=4)
    url = reverse("admin:retrieval_embeddingspace_changelist")
    page = viewer.get(url)
    assert page.status_code == 200 and b"rebuild_index" not in page.content
    viewer.post(url, {"action": "rebuild_index", "_selected_action": [space.pk]})
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_view_only_staff_cannot_evict_loras(viewer):
    entry = LoraCacheEntry.objects.create(
        key="a" * 64,
        kind="artist_style",
        base_model="sd",
        base_model_fingerprint="f",
        code_version="1",
        status="ready",
        file="x.safetensors",
    )
    url = reverse("admin:generation_loracacheentry_changelist")
    page = viewer.get(url)
    assert page.status_code == 200
    assert b"evict_selected" not in page.content and b"evict_to_budget" not in page.content
    viewer.post(url, {"action": "evict_selected", "_selected_action": [entry.pk]})
    entry.refresh_from_db()
    assert entry.status == "ready"
