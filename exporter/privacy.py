"""Optional pseudonyms: shopper ids and names replaced by salted hashes as they arrive."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonyms:
    """Keyed hashes (HMAC-SHA256) of shopper ids and names; the same input always maps the same way.

    With a secret salt, nobody holding only the exported data can reverse or confirm a guess.
    """

    def __init__(self, salt: str) -> None:
        self._key = salt.encode()

    def _digest(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def user_id(self, raw: str) -> str:
        """The pseudonymous id for a shopper id (also used to look shoppers up)."""
        return "s_" + self._digest("id", raw)[:20]

    def user_name(self, raw: str) -> str:
        """A readable stand-in for a shopper's name."""
        return "Shopper " + self._digest("name", raw)[:6]
