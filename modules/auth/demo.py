"""``lapak demo``: an API key of the demo seller, to try signed requests with at once."""

from __future__ import annotations

from app.errors import DomainError
from modules.user.demo import DEMO_SELLER_EMAIL, acting_as

from .api_keys import ApiKeyFormSent, allowed_scopes, create_key

KEY_NAME = "Shop integration (demo)"
#: As a web form's nonce makes one key per form, this makes one demo key per database: a second
#: run finds the key it made and creates none.
FORM_NONCE = "lapak-demo"


def load_demo() -> list[str]:
    """The demo seller's read-only key; its secret printed this once."""
    seller = acting_as(DEMO_SELLER_EMAIL)
    if seller is None:
        return []
    scopes = sorted(scope for scope in allowed_scopes(seller.role) if scope.endswith(":read"))
    try:
        issued = create_key(seller, name=KEY_NAME, scopes=scopes, form_nonce=FORM_NONCE)
    except ApiKeyFormSent as made:
        return [f"API key of {DEMO_SELLER_EMAIL}: {made.extra.get('key_id')}, already there."]
    except DomainError as refused:  # e.g. the seller has as many live keys as allowed
        return [f"API key of {DEMO_SELLER_EMAIL}: not made ({refused.detail or refused.title})."]
    return [
        f"API key of {DEMO_SELLER_EMAIL} ({', '.join(scopes)}): key id {issued.key_id}, "
        f"secret {issued.secret} (shown only once; sign requests as the README's "
        "'API keys' section shows)."
    ]
