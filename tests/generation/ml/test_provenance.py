from __future__ import annotations

from PIL import Image

from generation.ml.provenance import read_png_parameters, read_png_provenance, write_png


def test_provenance_round_trips_through_a_png_file(tmp_path):
    provenance = {
        "prompt": "a portrait by monet",
        "negative_prompt": "blurry",
        "seed": 7,
        "steps": 4,
        "guidance": 6.5,
        "width": 64,
        "height": 64,
        "sampler": "ddim",
        "base_model": "tiny-sd",
        "loras": [{"name": "style_a", "weight": 0.5}, {"name": "style_b", "weight": 1.0}],
        "retrieved": [12, 40],
        "note": "unicode survives: Café — 東京",
    }
    path = write_png(Image.new("RGB", (16, 16), "blue"), tmp_path / "out" / "x.png", provenance)
    assert read_png_provenance(path) == provenance
    params = read_png_parameters(path)
    first, negative, settings = params.split("\n")
    assert first == "a portrait by monet <lora:style_a:0.5> <lora:style_b:1>"
    assert negative == "Negative prompt: blurry"
    assert "Steps: 4" in settings and "Sampler: DDIM" in settings and "Seed: 7" in settings
    assert "Size: 64x64" in settings and "CFG scale: 6.5" in settings
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.png"]  # no temp file left
    with Image.open(path) as img:
        assert img.size == (16, 16)


def test_png_without_provenance_reads_as_empty(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    assert read_png_provenance(tmp_path / "plain.png") == {}
