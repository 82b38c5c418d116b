"""The API's JSON parser: DRF's, made so that no body can give a 500.

DRF's `JSONParser` turns malformed JSON into a 400, but two inputs still escaped it:

- nesting: the C JSON decoder recurses once per level and raises `RecursionError` (not a
  `ValueError`) near Python's recursion limit, so 2,000 `[` in a 4 KB body were a 500 on
  the anonymous search API; a body nested just under that limit would reach serializers
  and JSON fields that recurse again. Bodies deeper than `MAX_DEPTH` are refused.
- encodings: DRF refuses charsets that are not text encodings (`get_encoding`); a body
  that is not valid in its charset is a 400 naming the byte. Django's own form parsing
  (pages) accepts any charset `codecs.lookup` knows and failed on "rot13" with a
  `LookupError`: `config.middleware.BodyCharsetMiddleware` refuses such charsets for
  every request before any parser runs.

Every refusal is DRF's `ParseError`: a 400 with the reason in `detail`. Registered in
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]; views that list their parsers use this one too.
"""

from __future__ import annotations

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings
from rest_framework.utils.json import strict_constant

# No request of this API nests deeper than 3 (a generation's filters, a bulk operation's
# ids); 32 leaves room while staying far below the decoder's recursion limit.
MAX_DEPTH = 32


def json_depth_exceeds(data, limit: int = MAX_DEPTH) -> bool:
    """Whether `data` (parsed JSON) nests arrays/objects deeper than `limit`, iteratively."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with a nesting limit and strict decoding (see the module)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})  # text encodings only
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"The body is not valid {encoding}: {exc.reason} at byte {exc.start}."
            ) from exc
        try:
            data = json.loads(
                text, parse_constant=strict_constant if api_settings.STRICT_JSON else None
            )
        except RecursionError as exc:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        # Counting brackets is cheap; only a body that could be too deep is walked.
        if (
            isinstance(data, dict | list)
            and text.count("[") + text.count("{") > MAX_DEPTH
            and json_depth_exceeds(data)
        ):
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.")
        return data
