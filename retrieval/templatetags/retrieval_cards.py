"""Result cards of the search page, rendered in Python.

Through the template engine the cards (each with its score and four slot scores) cost
several milliseconds of a search page; here a fraction of one, as the catalog grid does
(see `catalog.templatetags.catalog_cards`). Same markup as the template had (tests
compare them); `artist`, `style` and `genre` must be loaded with each artwork.
"""

from html import escape

from django import template
from django.utils.safestring import mark_safe

from catalog.templatetags.catalog_cards import detail_urls, picture_html

register = template.Library()


@register.simple_tag
def search_hit_cards(hits) -> str:
    url = detail_urls()
    return mark_safe("".join(_card(hit, url) for hit in hits))  # noqa: S308 - escaped


def _card(hit, url) -> str:
    artwork = hit.artwork
    style = escape(artwork.style.display_name)
    title = escape(artwork.title)
    picture = picture_html(artwork, title, style)
    genre = escape(artwork.genre.display_name) if artwork.genre_id is not None else "no genre"
    slots = "".join(
        f'<span class="slot" title="{escape(name)}: {value:.3f}">{escape(name)} {value:.2f}</span>'
        for name, value in hit.slots.items()
    )
    return (
        f'<li class="card"><a href="{url(artwork.pk)}">{picture}'
        f'<span class="title">{title}</span></a>'
        f'<span class="meta">{escape(artwork.artist.name)} · {style} · {genre}</span>'
        f'<span class="meta">score {hit.score:.3f}</span>'
        f'<span class="slots">{slots}</span></li>'
    )
