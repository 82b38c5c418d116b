"""The ArtGAN layout reader: file names, path safety, class lists and CSV rows."""

from pathlib import Path

import pytest

from catalog import wikiart


@pytest.mark.parametrize(
    ("path", "artist", "title", "year"),
    [
        (
            "Impressionism/claude-monet_belle-ile-rain-effect-1886.jpg",
            "claude-monet",
            "Belle ile rain effect",
            1886,
        ),
        (
            "Post_Impressionism/vincent-van-gogh_ears-of-wheat-1890(1).jpg",
            "vincent-van-gogh",
            "Ears of wheat",
            1890,
        ),
        ("Impressionism/claude-monet_water-lilies-6.jpg", "claude-monet", "Water lilies 6", None),
        (
            "Symbolism/theodor-severin-kittelsen_kvitebj-rn-kong-valemon-1912-2.jpg",
            "theodor-severin-kittelsen",
            "Kvitebj rn kong valemon 2",
            1912,
        ),
        (
            "Abstract_Expressionism/aaron-siskind_acolman-1-1955.jpg",
            "aaron-siskind",
            "Acolman 1",
            1955,
        ),
        (
            "Abstract_Expressionism/georgia-o'keeffe_green-yellow-and-orange.jpg",
            "georgia-o'keeffe",
            "Green yellow and orange",
            None,
        ),
    ],
)
def test_parse_file_name(path, artist, title, year):
    parsed = wikiart.parse_file_name(path)
    assert (parsed.artist_slug, parsed.title, parsed.year) == (artist, title, year)


def test_parse_file_name_without_artist_separator_is_an_error():
    with pytest.raises(ValueError, match="separator"):
        wikiart.parse_file_name("Cubism/untitled.jpg")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("/etc/passwd.jpg", "absolute"),
        ("C:/art/x_y.jpg", "absolute"),
        ("../outside/x_y.jpg", "traversal"),
        ("Cubism/../../x_y.jpg", "traversal"),
        ("Cubism\\x_y.jpg", "backslash"),
        ("Cubism/sub/x_y.jpg", "expected"),
        ("Cubism/x_y.exe", "not an image"),
        ("", "empty"),
    ],
)
def test_unsafe_paths_are_refused(raw, reason):
    with pytest.raises(ValueError, match=reason):
        wikiart.check_relative_path(raw)


def test_artist_slug_from_class_matches_file_names():
    assert wikiart.artist_slug_from_class("Vincent_van_Gogh") == "vincent-van-gogh"
    assert wikiart.artist_slug_from_class("Pierre_Auguste_Renoir") == "pierre-auguste-renoir"


def _write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(text)


def _minimal_layout(root: Path) -> None:
    _write(root, "style_class.txt", "0 Cubism\n1 Art_Nouveau\n")
    _write(root, "genre_class.txt", "0 portrait\n1 landscape\n")
    _write(
        root, "style_train.csv", "Cubism/a-b_one-1910.jpg,0\r\nArt_Nouveau_Modern/c-d_two.jpg,1\r\n"
    )
    _write(root, "genre_train.csv", "Cubism/a-b_one-1910.jpg,1\r\n")


def test_read_layout_reports_bad_rows_with_file_and_line(tmp_path):
    _minimal_layout(tmp_path)
    _write(
        tmp_path,
        "style_val.csv",
        "\r\n".join(
            [
                "Cubism/e-f_good.jpg,0",  # line 1: fine
                "Cubism/g-h_bad-index.jpg,7",  # line 2: class 7 does not exist
                "../../etc/x_y.jpg,0",  # line 3: traversal
                "/abs/x_y.jpg,0",  # line 4: absolute
                "just-a-path.jpg",  # line 5: no class column
                "Cubism/i-j_nan.jpg,abc",  # line 6: not a number
            ]
        )
        + "\r\n",
    )
    layout = wikiart.read_layout(tmp_path)
    where = {(p.file, p.line) for p in layout.errors}
    assert where == {("style_val.csv", n) for n in (2, 3, 4, 5, 6)}
    assert "Cubism/e-f_good.jpg" in layout.records
    assert len(layout.records) == 3
    messages = " ".join(p.message for p in layout.errors)
    assert "traversal" in messages and "absolute" in messages


def test_read_layout_maps_folders_to_style_classes(tmp_path):
    _minimal_layout(tmp_path)
    layout = wikiart.read_layout(tmp_path)
    assert layout.style_folders["Art_Nouveau_Modern"] == "Art_Nouveau"
    rec = layout.records["Cubism/a-b_one-1910.jpg"]
    assert (rec.style, rec.genre, rec.style_split, rec.genre_split) == (
        "Cubism",
        "landscape",
        "train",
        "train",
    )
    assert layout.records["Art_Nouveau_Modern/c-d_two.jpg"].genre is None


def test_conflicting_genre_rows_keep_the_first_and_warn(tmp_path):
    _minimal_layout(tmp_path)
    _write(tmp_path, "genre_val.csv", "Cubism/a-b_one-1910.jpg,0\r\n")
    layout = wikiart.read_layout(tmp_path)
    assert layout.records["Cubism/a-b_one-1910.jpg"].genre == "landscape"
    assert [(w.file, w.line) for w in layout.warnings] == [("genre_val.csv", 1)]


def test_missing_style_class_list_is_a_layout_error(tmp_path):
    _minimal_layout(tmp_path)
    (tmp_path / "style_class.txt").unlink()
    with pytest.raises(wikiart.LayoutError, match="style_class.txt"):
        wikiart.read_layout(tmp_path)


def test_genre_rows_without_their_class_list_are_a_layout_error(tmp_path):
    _minimal_layout(tmp_path)
    (tmp_path / "genre_class.txt").unlink()
    with pytest.raises(wikiart.LayoutError, match="genre_class.txt is missing"):
        wikiart.read_layout(tmp_path)


def test_artgan_subfolder_layout_and_artist_files_without_extension(tmp_path):
    for task in ("Style", "Genre", "Artist"):
        (tmp_path / task).mkdir()
    (tmp_path / "Style" / "style_class.txt").write_text("0 Cubism\n")
    (tmp_path / "Style" / "style_train.csv").write_text("Cubism/pablo-picasso_x.jpg,0\r\n")
    (tmp_path / "Genre" / "genre_class.txt").write_text("0 portrait\n")
    (tmp_path / "Artist" / "artist_class").write_text("0 Pablo_Picasso\n")
    (tmp_path / "Artist" / "artist_train").write_text(
        "(Path to image),, (Groundtruth class) \n\nCubism/pablo-picasso_x.jpg,,0\n"
    )
    layout = wikiart.read_layout(tmp_path)
    assert layout.records["Cubism/pablo-picasso_x.jpg"].artist_class == "Pablo_Picasso"
    assert layout.errors == []


def test_real_metadata_layout_matches_the_published_counts():
    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "wikiart" / "artgan"
    if not root.is_dir():
        pytest.skip("../shared/data/wikiart/artgan is absent (it is never copied into the repo)")
    layout = wikiart.read_layout(root)
    assert len(layout.records) == 81_446
    assert sum(1 for r in layout.records.values() if r.genre is None) == 16_452
    assert len(layout.styles) == 27 and len(layout.genres) == 10 and len(layout.artists) == 23
    assert layout.errors == []
    assert (
        len(layout.warnings) == 1
        and "maurice-de-vlaminck_the-village" in layout.warnings[0].message
    )
    assert len({wikiart.parse_file_name(p).artist_slug for p in layout.records}) == 1_119


@pytest.mark.parametrize(
    ("slug", "name"),
    [
        # Every non-ASCII artist slug of the real WikiArt metadata.
        ("eugã¨ne-grasset", "Eugène Grasset"),
        ("mestre-ataã\xadde", "Mestre Ataíde"),
        ("andrã©-lhote", "André Lhote"),
        ("fã©lix-del-marle", "Félix Del Marle"),
        ("roger-bissiã¨re", "Roger Bissière"),
        ("grã©goire-michonze", "Grégoire Michonze"),
        ("antã³nio-de-carvalho-da-silva-porto", "António De Carvalho Da Silva Porto"),
        ("joaquã\xadn-sorolla", "Joaquín Sorolla"),
        ("georges-lacombeâ\xa0", "Georges Lacombe"),
        ("arnold-bã¶cklin", "Arnold Böcklin"),
        ("ferdinand-georg-waldmã¼ller", "Ferdinand Georg Waldmüller"),
        # Right as they are: nothing to repair.
        ("claude-monet", "Claude Monet"),
        ("são-paulo", "São Paulo"),
        ("élie-faure", "Élie Faure"),
    ],
)
def test_artist_names_repair_the_slugs_mis_decoded_letters(slug, name):
    assert wikiart.artist_name_from_slug(slug) == name
    if slug.isascii():
        assert wikiart.artist_name_from_slug(slug, repair=False) == name


def test_the_real_metadata_has_no_mis_decoded_name_left():
    import re

    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "wikiart" / "artgan"
    if not root.is_dir():
        pytest.skip("../shared/data/wikiart/artgan is absent (it is never copied into the repo)")
    layout = wikiart.read_layout(root)
    slugs = {wikiart.parse_file_name(path).artist_slug for path in layout.records}
    mojibake = re.compile("[\u00c0-\u00ff][\u0080-\u00bf]")
    broken = [s for s in slugs if mojibake.search(s)]
    assert len(slugs) == 1_119 and len(broken) == 11
    for slug in broken:
        name = wikiart.artist_name_from_slug(slug)
        assert not mojibake.search(name) and name.isprintable(), name
