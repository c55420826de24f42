"""What both Event twins need that is not a hot path, written once: the check of
``metadata`` (run only when metadata is given)."""

from __future__ import annotations

from nova.errors import ValidationError

__all__ = ("check_metadata",)


def check_metadata(metadata: object) -> dict[str, str] | None:
    """*metadata* as a new plain ``dict[str, str]`` (``None`` stays ``None``).

    Raises:
        ValidationError: not a mapping (or pairs), or a non-``str`` key or value.
    """
    if metadata is None:
        return None
    md: dict[object, object]
    if isinstance(metadata, dict):
        md = dict(metadata)
    else:
        try:
            md = dict(metadata)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ValidationError(
                f"Expected metadata as a dict[str, str], got {type(metadata).__name__}"
            ) from None
    for k, v in md.items():
        if not isinstance(k, str):
            raise ValidationError(f"Expected str metadata keys, got {type(k).__name__} key {k!r}")
        if not isinstance(v, str):
            raise ValidationError(
                f"Expected str metadata values, got {type(v).__name__} for key {k!r}"
            )
    return md  # type: ignore[return-value]  # checked above: every key and value is a str
