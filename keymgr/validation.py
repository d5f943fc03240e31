"""Input checks shared by the store's repositories (keymgr/applications.py, subscriptions.py,
api_keys.py, block_rules.py).

They live in one module so every area words its INVALID_ARGUMENT errors the same way and echoes user
input through the one function, `shown`, that shortens it and masks any full API key in it: no error
message may carry a secret, whichever repository raised it.
"""

from __future__ import annotations

import re

from keymgr import keys
from tollway.errors import InvalidArgument

REASON_MAX = 500

# A full key anywhere inside a string; used to keep keys out of error messages that echo input.
_FULL_KEY_ANYWHERE = re.compile(
    rf"{keys.PREFIX}_([a-z2-7]{{{keys.KEY_ID_LENGTH}}})_[a-z2-7]{{{keys.SECRET_LENGTH}}}"
)
_SHOWN_MAX = 80


def shown(value: str) -> str:
    """User input quoted for an error message: shortened, with any full key masked."""
    masked = _FULL_KEY_ANYWHERE.sub(lambda match: keys.display(match.group(1)), value)
    if len(masked) > _SHOWN_MAX:
        masked = masked[:_SHOWN_MAX] + "…"
    return repr(masked)


def require(value: str, field_name: str) -> str:
    """`value` stripped; INVALID_ARGUMENT when nothing is left."""
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{field_name} is required")
    return value


def check_length(value: str, field_name: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"{field_name} must be at most {limit} characters (got {len(value)})")


def require_key_id(value: str, field_name: str = "key_id") -> str:
    """`value` stripped, if it is an API key id; never echoes a full key sent in its place."""
    value = value.strip()
    if keys.parse_key(value) is not None:
        # Never echo it: the caller just sent a secret where an identifier belongs.
        raise InvalidArgument(f"{field_name} must be the key id, not the full key")
    if not keys.is_key_id(value):
        raise InvalidArgument(
            f"{field_name} must be a {keys.KEY_ID_LENGTH}-character key id "
            f"(the part between the underscores of {keys.PREFIX}_<key id>_…), got {shown(value)}"
        )
    return value
