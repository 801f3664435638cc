"""Settings of the stdout / JSON-lines publisher (``--publisher stdout``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["StdoutSettings"]


class StdoutSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where the JSON lines go and how their destination is named."""

    path: Annotated[
        str | None,
        msgspec.Meta(description="file to append JSON lines to (default: standard output)"),
    ] = None
    template: Annotated[
        str,
        msgspec.Meta(
            description="destination template, e.g. '{aggregate_type}.events' "
            "(fields: topic, aggregate_type, aggregate_id, event_type)"
        ),
    ] = "{topic}"
