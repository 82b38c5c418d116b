"""Reading the ArtGAN WikiArt layout: class lists, train/val CSVs, file names.

Pure Python (no Django): `read_layout` returns plain records and the problems it
found, each with its file and line, and `catalog.services.wikiart_import` writes them.

The layout (github.com/cs-chan/ArtGAN, "WikiArt Dataset"): `{style,genre,artist}_class.txt`
("<index> <Name>" per line) and `{task}_{train,val}.csv` rows mapping an image path
`<Style folder>/<artist-slug>_<title-slug>[-<year>][(n)].jpg` to a class index. Genre and
style files are `path,index` with CRLF endings; artist files are `path,,index` after a
header and a blank line. The files may sit in one folder or in `Style/`, `Genre/`,
`Artist/` sub-folders; artist files may lack the `.txt`/`.csv` extension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

TASKS = ("style", "genre", "artist")
SPLITS = ("train", "val")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
_YEAR = re.compile(r"^(1[0-9]{3}|20[0-9]{2})$")
_COPY_SUFFIX = re.compile(r"\((\d+)\)$")
_SAFE_SEGMENT = re.compile(r"^[^\x00-\x1f/\\]+$")


class LayoutError(Exception):
    """The folder is not a usable ArtGAN WikiArt layout (nothing is imported)."""


@dataclass(frozen=True)
class Problem:
    """A row (or file) that was skipped or needs attention, with where it is."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


@dataclass
class Record:
    """Everything the CSVs say about one image path."""

    path: str
    style: str | None = None
    style_split: str = ""
    genre: str | None = None
    genre_split: str = ""
    artist_class: str | None = None
    artist_split: str = ""


@dataclass
class Layout:
    """The parsed layout: class lists, one record per path, and what went wrong."""

    root: Path
    styles: list[tuple[int, str]] = field(default_factory=list)
    genres: list[tuple[int, str]] = field(default_factory=list)
    artists: list[tuple[int, str]] = field(default_factory=list)
    records: dict[str, Record] = field(default_factory=dict)
    style_folders: dict[str, str] = field(default_factory=dict)  # folder -> style name
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    files_read: list[str] = field(default_factory=list)
    rows_read: int = 0
    synthetic: bool = False


@dataclass(frozen=True)
class ParsedName:
    artist_slug: str
    title: str
    year: int | None


def check_relative_path(raw: str) -> str:
    """Return `raw` as a safe relative POSIX path or raise ValueError saying why.

    Refuses absolute paths, drive letters, `..` segments, backslashes and control
    characters, so a CSV can never point the importer outside its image root.
    """
    if not raw:
        raise ValueError("empty path")
    if "\\" in raw:
        raise ValueError(f"backslash in path {raw!r}")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise ValueError(f"absolute path refused: {raw!r}")
    parts = PurePosixPath(raw).parts
    if any(p in ("..", ".") for p in parts):
        raise ValueError(f"path traversal refused: {raw!r}")
    if not all(_SAFE_SEGMENT.match(p) for p in parts):
        raise ValueError(f"control characters in path {raw!r}")
    if len(parts) != 2:
        raise ValueError(f"expected '<Style folder>/<file>', got {raw!r}")
    if PurePosixPath(raw).suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"not an image file name: {raw!r}")
    return raw


def humanize_slug(slug: str) -> str:
    return " ".join(slug.replace("_", "-").split("-")).strip()


def parse_file_name(path: str) -> ParsedName:
    """Split `<artist-slug>_<title-slug>[-<year>][(n)].<ext>` into its parts.

    `claude-monet_belle-ile-rain-effect-1886.jpg` -> ("claude-monet", "Belle ile rain
    effect", 1886). A trailing copy marker `(1)` is dropped; a trailing `-2` after a
    year (a second version) stays in the title.
    """
    stem = PurePosixPath(path).stem
    stem = _COPY_SUFFIX.sub("", stem).strip()
    if "_" not in stem:
        raise ValueError(f"file name has no '<artist>_<title>' separator: {path!r}")
    artist_slug, title_slug = stem.split("_", 1)
    if not artist_slug:
        raise ValueError(f"file name has no artist: {path!r}")
    tokens = [t for t in title_slug.replace("_", "-").split("-") if t]
    year = None
    if tokens and _YEAR.match(tokens[-1]):
        year = int(tokens.pop())
    elif (
        len(tokens) >= 2
        and tokens[-1].isdigit()
        and len(tokens[-1]) <= 2
        and _YEAR.match(tokens[-2])
    ):
        year = int(tokens.pop(-2))
    title = " ".join(tokens) or "Untitled"
    return ParsedName(artist_slug=artist_slug, title=title[:1].upper() + title[1:], year=year)


# UTF-8 read as Latin-1, then lower-cased (as WikiArt's slugs were): a lead byte C2-DF
# shows as a lower-case letter à-ÿ (its upper case plus 0x20), its continuation byte as a
# character U+0080-U+00BF. "eugã¨ne" is "eugène", "bã¶cklin" is "böcklin".
_MOJIBAKE = re.compile("([\u00e2-\u00fe])([\u0080-\u00bf])")


def repair_mojibake(text: str) -> str:
    """Undo the mis-decoded UTF-8 in WikiArt's slugs (11 of 1,119 artists, 709 works):
    `joaquã\xadn-sorolla` -> `joaquín-sorolla`. Pairs that do not decode are kept, so
    text that was right stays as it is; no-break spaces become spaces."""

    def fix(match: re.Match) -> str:
        lead = chr(ord(match.group(1)) - 0x20)  # back to the upper-case lead byte
        try:
            return (lead + match.group(2)).encode("latin-1").decode("utf-8")
        except UnicodeError:
            return match.group(0)

    return _MOJIBAKE.sub(fix, text).replace("\u00a0", " ")


def artist_name_from_slug(slug: str, *, repair: bool = True) -> str:
    """`claude-monet` -> `Claude Monet`; mis-decoded letters are repaired
    (`arnold-bã¶cklin` -> `Arnold Böcklin`) unless `repair` is False."""
    text = repair_mojibake(slug) if repair else slug
    return " ".join(w[:1].upper() + w[1:] for w in text.replace(" ", "-").split("-") if w)


def artist_slug_from_class(name: str) -> str:
    """ArtGAN class `Vincent_van_Gogh` -> WikiArt slug `vincent-van-gogh`."""
    return name.replace("_", "-").lower()


def _find(root: Path, task: str, kind: str) -> Path | None:
    """Locate `{task}_{kind}` with or without extension, flat or in a task folder."""
    ext = ".txt" if kind == "class" else ".csv"
    for folder in (root, root / task.capitalize(), root / task):
        for name in (f"{task}_{kind}{ext}", f"{task}_{kind}"):
            candidate = folder / name
            # A symlink that leads out of the root is not part of the layout.
            if candidate.is_file() and candidate.resolve().is_relative_to(root.resolve()):
                return candidate
    return None


def _read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{path}: not UTF-8 text ({exc})") from exc
    return text.splitlines()


def read_class_list(path: Path, layout: Layout) -> list[tuple[int, str]]:
    classes: dict[int, str] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        line = line.strip()
        if not line:
            continue
        head, _, name = line.partition(" ")
        name = name.strip()
        if not head.isdigit() or not name or " " in name:
            layout.errors.append(Problem(path.name, lineno, f"malformed class line {line!r}"))
            continue
        idx = int(head)
        if idx in classes or name in classes.values():
            layout.errors.append(Problem(path.name, lineno, f"duplicate class {line!r}"))
            continue
        classes[idx] = name
    return sorted(classes.items())


def _read_rows(path: Path, task: str, split: str, classes: dict[int, str], layout: Layout):
    """Yield (path, class name) for each good row; report bad ones with their line."""
    layout.files_read.append(path.name)
    for lineno, line in enumerate(_read_lines(path), start=1):
        line = line.strip()
        if not line or line.startswith("(Path to image)"):
            continue
        layout.rows_read += 1
        fields = [f.strip() for f in line.split(",")]
        values = [f for f in fields[1:] if f]
        if len(fields) < 2 or len(values) != 1:
            layout.errors.append(
                Problem(path.name, lineno, f"expected 'path,class_index', got {line!r}")
            )
            continue
        try:
            rel = check_relative_path(fields[0])
        except ValueError as exc:
            layout.errors.append(Problem(path.name, lineno, str(exc)))
            continue
        if not values[0].isdigit() or int(values[0]) not in classes:
            layout.errors.append(
                Problem(path.name, lineno, f"unknown {task} class index {values[0]!r}")
            )
            continue
        yield rel, classes[int(values[0])], lineno


def read_layout(root: Path | str) -> Layout:
    """Parse an ArtGAN WikiArt folder. Raises LayoutError if it is unusable."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder")
    layout = Layout(root=root, synthetic=(root / "SYNTHETIC_DEMO.txt").is_file())
    csvs = {(t, s): _find(root, t, s) for t in TASKS for s in SPLITS}
    class_files = {t: _find(root, t, "class") for t in TASKS}
    if class_files["style"] is None:
        raise LayoutError(
            f"{root}: missing style_class.txt (every artwork needs a style); "
            "expected the ArtGAN layout: {style,genre,artist}_class.txt and _train/_val CSVs"
        )
    if not any(csvs[("style", s)] for s in SPLITS):
        raise LayoutError(f"{root}: no style_train.csv or style_val.csv")
    for task in ("genre", "artist"):
        has_rows = any(csvs[(task, s)] for s in SPLITS)
        if has_rows and class_files[task] is None:
            raise LayoutError(
                f"{root}: {task} CSVs are present but {task}_class.txt is missing, so "
                f"their class indexes cannot be read"
            )
    layout.styles = read_class_list(class_files["style"], layout)
    if class_files["genre"]:
        layout.genres = read_class_list(class_files["genre"], layout)
    if class_files["artist"]:
        layout.artists = read_class_list(class_files["artist"], layout)
    by_task = {
        "style": dict(layout.styles),
        "genre": dict(layout.genres),
        "artist": dict(layout.artists),
    }

    for task in TASKS:
        for split in SPLITS:
            csv_path = csvs[(task, split)]
            if csv_path is None:
                continue
            for rel, name, lineno in _read_rows(csv_path, task, split, by_task[task], layout):
                rec = layout.records.get(rel) or layout.records.setdefault(rel, Record(rel))
                current = getattr(rec, "artist_class" if task == "artist" else task)
                if current is not None and current != name:
                    layout.warnings.append(
                        Problem(
                            csv_path.name,
                            lineno,
                            f"{rel} already has {task} {current!r}; kept it and ignored {name!r}",
                        )
                    )
                    continue
                if task == "style":
                    rec.style, rec.style_split = name, split
                    layout.style_folders.setdefault(rel.split("/", 1)[0], name)
                elif task == "genre":
                    rec.genre, rec.genre_split = name, split
                else:
                    rec.artist_class, rec.artist_split = name, split

    # A path seen only in genre/artist files takes its style from its folder.
    for rel, rec in list(layout.records.items()):
        if rec.style is None:
            folder = rel.split("/", 1)[0]
            style = layout.style_folders.get(folder) or by_task["style"].get(
                next((i for i, n in layout.styles if n == folder), -1)
            )
            if style is None:
                layout.errors.append(
                    Problem("(all CSVs)", None, f"{rel}: no style for folder {folder!r}")
                )
                del layout.records[rel]
            else:
                rec.style = style
    return layout
