"""The `curators` group, allowed to review and correct genre labels."""

from django.db import migrations


def create_curators(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after migrate; make sure this one exists now.
    catalog = apps.get_app_config("catalog")
    catalog.models_module = True
    create_permissions(catalog, apps=apps, verbosity=0)
    catalog.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    group, _ = group_model.objects.get_or_create(name="curators")
    group.permissions.add(
        permission_model.objects.get(codename="curate_genre", content_type__app_label="catalog")
    )


def remove_curators(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="curators").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0001_initial"),
        ("catalog", "0002_labels_review"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_curators, remove_curators)]
