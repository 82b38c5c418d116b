import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group


@pytest.fixture
def tiny_labelling(settings, tiny_models_dir):
    """Point the captioning and VQA settings at the tiny BLIP-2 OPT twin."""
    settings.VQA_MODEL = str(tiny_models_dir / "tiny-blip2-vqa")
    settings.CAPTION_MODEL = str(tiny_models_dir / "tiny-blip2-vqa")
    return tiny_models_dir


def make_user(name: str, *, curator: bool = False):
    user = get_user_model().objects.create_user(name, "", "pw")
    if curator:
        user.groups.add(Group.objects.get(name="curators"))
    return user


@pytest.fixture
def curator(db):
    return make_user("cora", curator=True)


@pytest.fixture
def curator2(db):
    return make_user("cleo", curator=True)


@pytest.fixture
def plain_user(db):
    return make_user("pat")
