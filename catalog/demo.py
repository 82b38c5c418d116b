"""A synthetic WikiArt-layout catalog that needs no download (pure PIL, no Django).

`write_demo_catalog(dir)` draws small procedural "paintings" and writes them in the
ArtGAN layout (style folders of images, class lists, train/val CSVs) with a
`SYNTHETIC_DEMO.txt` marker, so `import_wikiart` imports them like the real data
and the UI labels them as synthetic. Styles are drawn with visibly different
techniques (dabs, facets, halftone, flat woodblock areas, colour fields, whiplash
curves); genres with different compositions; a fifth of the works have no genre.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from catalog.wikiart import parse_file_name

# The real WikiArt class lists, so the demo's vocabulary is the real one.
STYLES = [
    "Abstract_Expressionism",
    "Action_painting",
    "Analytical_Cubism",
    "Art_Nouveau",
    "Baroque",
    "Color_Field_Painting",
    "Contemporary_Realism",
    "Cubism",
    "Early_Renaissance",
    "Expressionism",
    "Fauvism",
    "High_Renaissance",
    "Impressionism",
    "Mannerism_Late_Renaissance",
    "Minimalism",
    "Naive_Art_Primitivism",
    "New_Realism",
    "Northern_Renaissance",
    "Pointillism",
    "Pop_Art",
    "Post_Impressionism",
    "Realism",
    "Rococo",
    "Romanticism",
    "Symbolism",
    "Synthetic_Cubism",
    "Ukiyo_e",
]
GENRES = [
    "abstract_painting",
    "cityscape",
    "genre_painting",
    "illustration",
    "landscape",
    "nude_painting",
    "portrait",
    "religious_painting",
    "sketch_and_study",
    "still_life",
]
# Folder names as WikiArt has them (one differs from its class name).
FOLDER = {"Art_Nouveau": "Art_Nouveau_Modern"}

PALETTES = {
    "Impressionism": [
        (143, 188, 219),
        (244, 214, 150),
        (168, 206, 150),
        (232, 170, 180),
        (250, 240, 210),
    ],
    "Cubism": [(120, 96, 70), (170, 150, 110), (90, 90, 85), (200, 185, 150), (60, 55, 50)],
    "Pop_Art": [(255, 221, 0), (230, 30, 60), (0, 150, 220), (250, 250, 250), (20, 20, 20)],
    "Ukiyo_e": [(238, 226, 200), (40, 60, 110), (190, 60, 50), (90, 120, 110), (30, 30, 40)],
    "Minimalism": [(235, 235, 230), (200, 40, 30), (20, 20, 25), (60, 90, 160), (245, 200, 60)],
    "Art_Nouveau": [(196, 160, 80), (110, 130, 80), (230, 210, 170), (150, 80, 60), (60, 70, 50)],
}
DEMO_GENRES = ["landscape", "portrait", "still_life", "cityscape", "abstract_painting"]

# Fictional painters: (slug, styles they paint in, listed in the artist class list?)
ARTISTS = [
    ("ada-vermeil", ["Impressionism", "Minimalism"], True),
    ("bruno-okafor", ["Cubism", "Art_Nouveau"], True),
    ("chiyo-hanabusa", ["Ukiyo_e", "Impressionism"], True),
    ("dora-lichtwerk", ["Pop_Art", "Minimalism"], True),
    ("emil-sandqvist", ["Art_Nouveau", "Cubism"], False),
    ("farah-quent", ["Pop_Art", "Ukiyo_e"], False),
]
TITLE_WORDS = {
    "landscape": (
        ["Quiet", "Windy", "Golden", "Misty", "Late"],
        ["hills", "meadow", "river bend", "dunes", "valley"],
    ),
    "portrait": (
        ["Portrait of", "Study of", "Head of", "Likeness of", "Figure of"],
        ["a sailor", "the poet", "a girl", "my mother", "a musician"],
    ),
    "still_life": (
        ["Pears and", "Lemons with", "Vase of", "Bowl with", "Table with"],
        ["a jug", "tulips", "oranges", "a blue cup", "bread"],
    ),
    "cityscape": (
        ["Rooftops of", "Night in", "Bridge at", "Harbour of", "Streets of"],
        ["Lisbon", "the old town", "Arles", "Osaka", "Vienna"],
    ),
    "abstract_painting": (
        ["Composition", "Rhythm", "Tension", "Interval", "Field"],
        ["no 1", "in red", "and blue", "ii", "of squares"],
    ),
}


@dataclass(frozen=True)
class DemoArtwork:
    path: str
    style: str
    genre: str | None
    artist: str
    split: str
    # What the picture shows: the genre its title was made for, even when the genre label is
    # withheld (a fifth of the works have none): "Pears and bread" is drawn as a still life.
    subject: str = ""


def _jitter(color, rng: random.Random, amount: int = 25):
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in color)


def _composition(draw: ImageDraw.ImageDraw, genre: str, pal, rng: random.Random, w: int, h: int):
    """Draw the subject: what the genre looks like, in the style's palette."""
    if genre == "landscape":
        horizon = int(h * rng.uniform(0.4, 0.6))
        draw.rectangle([0, 0, w, horizon], fill=pal[0])
        for i in range(3):
            pts = [
                (x, horizon - int(18 * math.sin(x / (25 + 10 * i) + rng.random() * 6)) + 12 * i)
                for x in range(0, w + 8, 8)
            ]
            draw.polygon(pts + [(w, h), (0, h)], fill=_jitter(pal[2 + (i % 2)], rng))
        draw.ellipse([w * 0.7, h * 0.1, w * 0.7 + 24, h * 0.1 + 24], fill=pal[1])
    elif genre == "portrait":
        draw.rectangle([0, 0, w, h], fill=pal[3])
        cx = w // 2 + rng.randint(-15, 15)
        draw.ellipse([cx - 70, h * 0.62, cx + 70, h * 1.3], fill=pal[1])
        draw.ellipse([cx - 34, h * 0.18, cx + 34, h * 0.62], fill=pal[2])
        draw.ellipse([cx - 16, h * 0.33, cx - 8, h * 0.37], fill=pal[4])
        draw.ellipse([cx + 8, h * 0.33, cx + 16, h * 0.37], fill=pal[4])
    elif genre == "still_life":
        draw.rectangle([0, 0, w, h], fill=pal[0])
        table = int(h * 0.62)
        draw.rectangle([0, table, w, h], fill=pal[4])
        for _ in range(rng.randint(3, 5)):
            r = rng.randint(14, 26)
            x = rng.randint(r, w - r)
            draw.ellipse(
                [x - r, table - 2 * r + 6, x + r, table + 6],
                fill=_jitter(rng.choice(pal[1:4]), rng),
            )
        draw.rectangle([w * 0.4, table - 70, w * 0.4 + 26, table], fill=pal[2])
    elif genre == "cityscape":
        draw.rectangle([0, 0, w, h], fill=pal[0])
        x = 0
        while x < w:
            bw, bh = rng.randint(18, 40), rng.randint(int(h * 0.3), int(h * 0.85))
            draw.rectangle([x, h - bh, x + bw, h], fill=_jitter(rng.choice(pal[1:]), rng))
            for wy in range(h - bh + 6, h - 6, 12):
                draw.rectangle([x + 4, wy, x + 8, wy + 5], fill=pal[0])
            x += bw + rng.randint(0, 4)
    else:  # abstract_painting
        draw.rectangle([0, 0, w, h], fill=rng.choice(pal))
        for _ in range(rng.randint(6, 12)):
            x0, y0 = rng.randint(0, w), rng.randint(0, h)
            x1, y1 = x0 + rng.randint(-90, 90), y0 + rng.randint(-90, 90)
            shape = rng.choice(["rect", "ellipse", "line"])
            box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
            if shape == "rect":
                draw.rectangle(box, fill=rng.choice(pal))
            elif shape == "ellipse":
                draw.ellipse(box, fill=rng.choice(pal))
            else:
                draw.line([x0, y0, x1, y1], fill=rng.choice(pal), width=rng.randint(3, 9))


def _technique(img: Image.Image, style: str, pal, rng: random.Random) -> Image.Image:
    """Re-paint the composition with the style's technique."""
    w, h = img.size
    if style == "Impressionism":
        out = img.filter(ImageFilter.GaussianBlur(2)).copy()
        draw = ImageDraw.Draw(out)
        src = img.load()
        for _ in range(1400):
            x, y = rng.randrange(w), rng.randrange(h)
            c = _jitter(src[x, y], rng, 35)
            dx, dy = rng.randint(2, 6), rng.randint(1, 3)
            draw.ellipse([x, y, x + dx, y + dy], fill=c)
        return out
    if style == "Cubism":
        out = img.copy()
        draw = ImageDraw.Draw(out)
        src = img.load()
        for _ in range(40):
            cx, cy = rng.randrange(w), rng.randrange(h)
            pts = [(cx + rng.randint(-28, 28), cy + rng.randint(-28, 28)) for _ in range(3)]
            draw.polygon(pts, fill=_jitter(src[cx, cy], rng, 30), outline=pal[4])
        return out.quantize(8).convert("RGB")
    if style == "Pop_Art":
        out = img.quantize(5).convert("RGB")
        edges = (
            img.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 40 else 0)
        )
        out.paste((20, 20, 20), mask=edges)
        draw = ImageDraw.Draw(out)
        for y in range(0, h, 7):
            for x in range((y // 7) % 2 * 3, w, 7):
                if (x + y) % 3 == 0:
                    draw.ellipse([x, y, x + 2, y + 2], fill=(230, 30, 60))
        return out
    if style == "Ukiyo_e":
        out = img.quantize(6).convert("RGB").filter(ImageFilter.SMOOTH_MORE)
        edges = (
            img.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 30 else 0)
        )
        out.paste(pal[4], mask=edges)
        draw = ImageDraw.Draw(out)
        for i in range(4):
            y0 = int(h * 0.8) + i * 8
            draw.arc([-20 + i * 30, y0 - 20, 80 + i * 30, y0 + 20], 180, 360, fill=pal[1], width=2)
        grain = Image.effect_noise((w, h), 12).convert("RGB")
        return Image.blend(out, grain, 0.06)
    if style == "Minimalism":
        small = img.resize((3, 3), Image.Resampling.BOX)
        out = small.resize((w, h), Image.Resampling.NEAREST).quantize(3).convert("RGB")
        draw = ImageDraw.Draw(out)
        draw.rectangle([w * 0.1, h * 0.1, w * 0.9, h * 0.9], outline=pal[2], width=2)
        return out
    # Art_Nouveau: soft golden tones with whiplash curves and a decorative border.
    out = Image.blend(img, Image.new("RGB", (w, h), pal[0]), 0.35)
    draw = ImageDraw.Draw(out)
    for i in range(3):
        pts = [(x, h * 0.15 + math.sin(x / 18 + i) * (6 + 4 * i)) for x in range(0, w, 4)]
        draw.line(pts, fill=pal[3 + i % 2], width=2)
    draw.rectangle([3, 3, w - 4, h - 4], outline=pal[4], width=5)
    return out


def draw_painting(style: str, genre: str, seed: int, size=(256, 192)) -> Image.Image:
    """Draw one synthetic painting; the same arguments give the same image."""
    rng = random.Random(seed)
    pal = PALETTES[style]
    img = Image.new("RGB", size, pal[0])
    _composition(ImageDraw.Draw(img), genre, pal, rng, *size)
    return _technique(img, style, pal, rng)


def plan_demo_catalog(per_artist: int = 20, seed: int = 7) -> list[DemoArtwork]:
    rng = random.Random(seed)
    works, seen = [], set()
    for slug, styles, _listed in ARTISTS:
        for i in range(per_artist):
            style = styles[0] if i % 3 else styles[1]
            genre = DEMO_GENRES[(i + len(slug)) % len(DEMO_GENRES)]
            first, second = TITLE_WORDS[genre]
            title = f"{rng.choice(first)} {rng.choice(second)}".lower().replace(" ", "-")
            year = rng.randint(1850, 1990)
            name = f"{slug}_{title}-{year}"
            while name in seen:
                name += "(1)"  # WikiArt's own marker for a repeated name
            seen.add(name)
            has_genre = rng.random() >= 0.2
            works.append(
                DemoArtwork(
                    path=f"{FOLDER.get(style, style)}/{name}.jpg",
                    style=style,
                    genre=genre if has_genre else None,
                    artist=slug,
                    split="val" if rng.random() < 0.2 else "train",
                    subject=genre,
                )
            )
    return works


def write_demo_catalog(
    out_dir: Path | str, per_artist: int = 20, seed: int = 7, images: bool = True
) -> list[DemoArtwork]:
    """Write the demo catalog in the ArtGAN layout under `out_dir`; return its plan."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    works = plan_demo_catalog(per_artist, seed)
    (out / "SYNTHETIC_DEMO.txt").write_text(
        "Synthetic demo catalog written by `python manage.py make_demo_catalog`.\n"
        "Every image here is procedurally drawn; none is a real painting or from WikiArt.\n"
    )
    (out / "style_class.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(STYLES)))
    (out / "genre_class.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(GENRES)))
    listed = [slug for slug, _s, is_listed in ARTISTS if is_listed]
    artist_classes = ["_".join(w.capitalize() for w in s.split("-")) for s in listed]
    (out / "artist_class.txt").write_text(
        "".join(f"{i} {n}\n" for i, n in enumerate(artist_classes))
    )
    for split in ("train", "val"):
        part = [w for w in works if w.split == split]
        (out / f"style_{split}.csv").write_text(
            "".join(f"{w.path},{STYLES.index(w.style)}\r\n" for w in part)
        )
        (out / f"genre_{split}.csv").write_text(
            "".join(f"{w.path},{GENRES.index(w.genre)}\r\n" for w in part if w.genre)
        )
        rows = [f"{w.path},,{listed.index(w.artist)}\n" for w in part if w.artist in listed]
        (out / f"artist_{split}.csv").write_text(
            "(Path to image),, (Groundtruth class)\n\n" + "".join(rows)
        )
    if images:
        for n, w in enumerate(works):
            target = out / w.path
            target.parent.mkdir(parents=True, exist_ok=True)
            subject = w.subject or w.genre or DEMO_GENRES[n % len(DEMO_GENRES)]
            draw_painting(w.style, subject, seed * 100_003 + n).save(target, quality=88)
    assert all(parse_file_name(w.path) for w in works)
    return works
