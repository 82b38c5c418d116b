"""The WikiArt import: counts, idempotency, images, bad input, label precedence."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog import services
from catalog.demo import plan_demo_catalog
from catalog.models import Artist, Artwork, Genre, GenreLabel, LabelSource, Style

pytestmark = pytest.mark.django_db
PLAN = plan_demo_catalog()


def _snapshot():
    return (Artwork.objects.count(), Artist.objects.count(), GenreLabel.objects.count())


def test_demo_import_creates_the_planned_catalog(imported_demo, settings):
    report = imported_demo
    assert report.synthetic and report.errors == []
    assert report.artworks_created == Artwork.objects.count() == len(PLAN)
    assert Artist.objects.count() == len({w.artist for w in PLAN})
    assert Style.objects.count() == 27 and Genre.objects.count() == 10
    without = sum(1 for w in PLAN if w.genre is None)
    assert Artwork.objects.filter(genre__isnull=True).count() == without
    assert GenreLabel.objects.filter(source=LabelSource.WIKIART).count() == len(PLAN) - without
    assert report.images_attached == len(PLAN)
    art = Artwork.objects.get(path=PLAN[0].path)
    assert art.is_synthetic and art.image and art.thumbnail
    assert (Path(settings.MEDIA_ROOT) / art.thumbnail.name).is_file()
    assert max(art.image_width, art.image_height) == 256
    # Proper names come from the artist class list where the artist is in it.
    assert Artist.objects.get(slug="ada-vermeil").name == "Ada Vermeil"
    assert Artist.objects.get(slug="ada-vermeil").class_index == 0
    assert Style.objects.get(name="Art_Nouveau").folder == "Art_Nouveau_Modern"


def test_reimport_creates_no_duplicates(imported_demo, demo_dir):
    before = _snapshot()
    again = services.wikiart_import(demo_dir)
    assert _snapshot() == before
    assert again.artworks_created == 0 and again.labels_created == 0
    assert again.artworks_unchanged == len(PLAN) and again.images_attached == 0


def test_metadata_only_import_then_images_attached_on_rerun(db, demo_dir, tmp_path):
    empty = tmp_path / "no-images"
    empty.mkdir()
    first = services.wikiart_import(demo_dir, images_root=empty)
    assert first.images_attached == 0
    assert not Artwork.objects.exclude(image="").exists()
    second = services.wikiart_import(demo_dir)
    assert second.images_attached == len(PLAN) and second.artworks_created == 0
    assert not Artwork.objects.filter(image="").exists()


def test_malformed_rows_are_reported_and_skipped_without_losing_anything(imported_demo, demo_dir):
    before = _snapshot()
    lines = (demo_dir / "style_train.csv").read_text().splitlines()
    good_new = "Cubism/new-painter_fresh-work-1920.jpg,7"
    bad = [
        "Cubism/x-y_bad-class.jpg,99",
        "../../../etc/passwd_x.jpg,7",
        "/tmp/abs_x.jpg,7",
        "only-one-field.jpg",
        good_new,
    ]
    (demo_dir / "style_train.csv").write_text("\r\n".join(lines + bad) + "\r\n")
    out, err = StringIO(), StringIO()
    call_command("import_wikiart", str(demo_dir), "--no-progress", stdout=out, stderr=err)
    first_bad = len(lines) + 1
    for offset in range(4):
        assert f"style_train.csv:{first_bad + offset}:" in err.getvalue()
    assert "skipped rows/files: 4" in out.getvalue()
    assert Artwork.objects.filter(path="Cubism/new-painter_fresh-work-1920.jpg").exists()
    assert _snapshot()[0] == before[0] + 1


def test_missing_class_list_fails_clearly_and_writes_nothing(imported_demo, demo_dir):
    before = _snapshot()
    (demo_dir / "genre_class.txt").unlink()
    with pytest.raises(CommandError, match="genre_class.txt is missing"):
        call_command("import_wikiart", str(demo_dir), "--no-progress", stdout=StringIO())
    assert _snapshot() == before


def test_unreadable_image_is_reported_and_the_artwork_kept(db, demo_dir):
    broken = PLAN[3].path
    (demo_dir / broken).write_bytes(b"this is not a jpeg")
    report = services.wikiart_import(demo_dir)
    assert report.images_failed == 1 and report.images_attached == len(PLAN) - 1
    problem = next(p for p in report.errors if p.file == broken)
    assert "unreadable image" in problem.message
    art = Artwork.objects.get(path=broken)
    assert not art.image and art.title  # metadata kept, image refused


def test_oversized_image_is_refused(db, demo_dir, settings):
    settings.CATALOG_MAX_IMAGE_PIXELS = 1000
    report = services.wikiart_import(demo_dir)
    assert report.images_attached == 0 and report.images_failed == len(PLAN)
    assert "pixel limit" in report.errors[0].message


def test_traversal_paths_never_touch_files_outside_the_root(db, demo_dir, tmp_path):
    secret = tmp_path / "secret_file.jpg"
    secret.write_bytes((demo_dir / PLAN[0].path).read_bytes())
    with (demo_dir / "style_train.csv").open("a") as f:
        f.write("Cubism/../../secret_file.jpg,7\r\n")
    report = services.wikiart_import(demo_dir)
    assert any("traversal" in p.message for p in report.errors)
    assert not Artwork.objects.filter(path__contains="secret").exists()


def test_symlinks_out_of_the_root_are_refused(db, demo_dir, tmp_path):
    """A CSV path cannot leave the root (tested above); a symlink in the folder could, so
    files and folders must resolve inside it. Symlinks that stay inside are fine."""
    outside = tmp_path / "outside"
    outside.mkdir()
    # A file symlinked to a (valid) image outside the root.
    secret = outside / "secret.jpg"
    secret.write_bytes((demo_dir / PLAN[0].path).read_bytes())
    (demo_dir / PLAN[0].path).unlink()
    (demo_dir / PLAN[0].path).symlink_to(secret)
    # A symlink that stays inside the root.
    (demo_dir / PLAN[1].path).unlink()
    (demo_dir / PLAN[1].path).symlink_to(demo_dir / PLAN[2].path)
    # A metadata file symlinked out of the root is not part of the layout.
    (outside / "genre_class.txt").write_text("0 landscape\n")
    (demo_dir / "genre_class.txt").rename(demo_dir / "genre_class.bak")
    (demo_dir / "genre_class.txt").symlink_to(outside / "genre_class.txt")
    with pytest.raises(CommandError, match="genre_class.txt is missing"):
        call_command("import_wikiart", str(demo_dir), "--no-progress", stdout=StringIO())
    (demo_dir / "genre_class.txt").unlink()
    (demo_dir / "genre_class.bak").rename(demo_dir / "genre_class.txt")

    report = services.wikiart_import(demo_dir)
    problem = next(p for p in report.errors if p.file == PLAN[0].path)
    assert "resolves outside the root" in problem.message
    assert not Artwork.objects.get(path=PLAN[0].path).image  # kept, without the image
    assert Artwork.objects.get(path=PLAN[1].path).image  # an inside symlink is followed
    assert report.images_attached == len(PLAN) - 1 and report.images_failed == 1


def test_curator_label_wins_over_a_changed_wikiart_label_on_reimport(imported_demo, demo_dir):
    work = next(w for w in PLAN if w.genre == "landscape")
    art = Artwork.objects.get(path=work.path)
    portrait, still_life = Genre.objects.get(name="portrait"), Genre.objects.get(name="still_life")
    services.genre_label_add(art, portrait, source=LabelSource.CURATOR, note="looked again")
    other = next(w for w in PLAN if w.genre == "landscape" and w.path != work.path)
    # WikiArt now says still_life (index 9) for both artworks.
    for split in ("train", "val"):
        csv = demo_dir / f"genre_{split}.csv"
        text = csv.read_bytes().decode()
        for path in (work.path, other.path):
            text = text.replace(f"{path},4\r\n", f"{path},9\r\n")
        csv.write_bytes(text.encode())
    report = services.wikiart_import(demo_dir)
    assert report.labels_created == 2
    art.refresh_from_db()
    assert (art.genre, art.genre_source) == (portrait, LabelSource.CURATOR)
    other_art = Artwork.objects.get(path=other.path)
    assert (other_art.genre, other_art.genre_source) == (still_life, LabelSource.WIKIART)
    history = list(art.genre_labels.values_list("source", "genre__name"))
    assert history == [("wikiart", "landscape"), ("curator", "portrait"), ("wikiart", "still_life")]


def test_label_precedence_curator_then_wikiart_then_vqa(imported_demo):
    art = Artwork.objects.filter(genre__isnull=True).first()
    cityscape, portrait = Genre.objects.get(name="cityscape"), Genre.objects.get(name="portrait")
    services.genre_label_add(art, cityscape, source=LabelSource.VQA, confidence=0.61, model_id="m")
    assert (art.genre, art.genre_source, art.genre_confidence) == (cityscape, "vqa", 0.61)
    services.genre_label_add(art, portrait, source=LabelSource.CURATOR)
    services.genre_label_add(art, cityscape, source=LabelSource.VQA, confidence=0.99, model_id="m")
    assert (art.genre, art.genre_source) == (portrait, "curator")
    assert art.label_version == 3


def test_import_command_prints_a_final_report(db, demo_dir):
    out = StringIO()
    call_command("import_wikiart", str(demo_dir), "--no-progress", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert f"{len(PLAN)} created" in text and "synthetic demo catalog" in text
    assert "Import finished." in text


def test_mis_decoded_artist_names_are_repaired_and_old_imports_mended(db, demo_dir, tmp_path):
    """WikiArt's slug `arnold-bã¶cklin` is Arnold Böcklin: the import names him so, and a
    re-import mends the name an earlier version derived ("Arnold Bã¶cklin") unless someone
    has changed it since."""
    styles = dict(
        line.split(" ", 1)[::-1]
        for line in (demo_dir / "style_class.txt").read_text().split("\n")
        if line
    )
    with (demo_dir / "style_train.csv").open("a", encoding="utf-8") as fh:
        fh.write(
            f"Romanticism/arnold-bã¶cklin_isle-of-the-dead-1880.jpg,{styles['Romanticism']}\r\n"
        )
        fh.write(
            f"Romanticism/joaquã\xadn-sorolla_sewing-the-sail-1896.jpg,{styles['Romanticism']}\r\n"
        )
    empty = tmp_path / "no-images"
    empty.mkdir()
    report = services.wikiart_import(demo_dir, images_root=empty)
    assert report.errors == []
    bocklin = Artist.objects.get(slug="arnold-bã¶cklin")
    assert bocklin.name == "Arnold Böcklin"
    assert Artwork.objects.get(artist=bocklin).title == "Isle of the dead"

    Artist.objects.filter(pk=bocklin.pk).update(name="Arnold Bã¶cklin")  # an older import
    Artist.objects.filter(slug="joaquã\xadn-sorolla").update(name="J. Sorolla y Bastida")
    services.wikiart_import(demo_dir, images_root=empty)
    assert Artist.objects.get(pk=bocklin.pk).name == "Arnold Böcklin"
    assert Artist.objects.get(slug="joaquã\xadn-sorolla").name == "J. Sorolla y Bastida"


def test_make_demo_catalog_command_writes_an_importable_layout(db, tmp_path):
    out = StringIO()
    call_command("make_demo_catalog", str(tmp_path / "d"), "--per-artist", "3", stdout=out)
    assert (tmp_path / "d" / "SYNTHETIC_DEMO.txt").is_file()
    report = services.wikiart_import(tmp_path / "d")
    assert report.artworks_created == 18 and report.errors == []


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "wikiart" / "artgan"


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="../shared/data is absent (never copied into the repo)"
)
def test_full_real_metadata_import_counts():
    report = services.wikiart_import(SHARED, batch_size=5000)
    assert Artwork.objects.count() == 81_446
    assert Artist.objects.count() == 1_119
    assert Style.objects.count() == 27 and Genre.objects.count() == 10
    assert Artwork.objects.filter(genre__isnull=True).count() == 16_452
    assert report.errors == [] and len(report.warnings) == 1
