"""Who is looking at the dashboard, and whether a form they sent came from it.

When `WARREN_API_TOKENS` is set the dashboard asks for a token once and keeps it in an
HttpOnly, SameSite=Strict cookie on `/ui` (Secure over HTTPS); every page and action is then
allowed by that token's scope, the same rule as the API's (`api.auth.Tokens.required_scope` of
the route the action mirrors). Without tokens the dashboard is open, as the API is.

Every browser also gets a random session cookie. Its CSRF token is an HMAC of that cookie
under a key derived from the deployment's secrets (`csrf_key`): forms carry it in a
hidden field, htmx requests in the `X-CSRF-Token` header, and every POST is refused (403)
unless it matches, compared in constant time. With SameSite=Strict a cross-site form sends no
cookie at all, and without the cookie no CSRF token can match.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import falcon

from api.auth import Scope, Tokens
from api.errors import Forbidden, Unauthorized
from service.settings import Settings

TOKEN_COOKIE = "warren_ui_token"
SESSION_COOKIE = "warren_ui_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
PATH = "/ui"
_SESSION_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def csrf_key(settings: Settings) -> bytes:
    """The key of the CSRF tokens: from the deployment's secrets, so that every API process
    and host agrees. With none configured, `WARREN_UI_CSRF_KEY` (`warren api` draws one per
    start, for the workers it forks), else a random key of this process: never one that
    anybody could compute, which a cookie planted from a sibling site would then defeat."""
    secrets_ = [s.get_secret_value() for s in (settings.secret_key, settings.ui_csrf_key) if s]
    if not secrets_ and not settings.api_tokens:
        return secrets.token_bytes(32)
    material = "\0".join(["warren-ui-csrf", *secrets_, *settings.api_tokens])
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).digest()


class SignInRequired(Unauthorized):
    """The dashboard needs a token and the browser has none, or an unknown one (401; a page
    sends the browser to the sign-in form instead)."""


class NotAllowed(Forbidden):
    """A signed-in token without the scope an action needs, or a POST without the CSRF token
    of its session (403)."""


@dataclass(frozen=True)
class Visitor:
    """The browser behind a request: its scope (None: not signed in), its token's name, and
    the CSRF token its forms must carry."""

    scope: Scope | None
    name: str | None
    csrf: str
    tokens_configured: bool

    def may(self, method: str, template: str) -> bool:
        """Whether this visitor may do what `method template` of the API does."""
        return self.scope is not None and self.scope >= Tokens.required_scope(method, template)


class Access:
    """The dashboard's sign-in and CSRF rules for one app."""

    def __init__(self, settings: Settings) -> None:
        self.tokens = Tokens.from_settings(settings)
        self._key = csrf_key(settings)

    def visitor(self, req: falcon.Request, resp: falcon.Response) -> Visitor:
        """The visitor of `req`; gives the browser a session cookie when it has none."""
        session = req.cookies.get(SESSION_COOKIE, "")
        if not _SESSION_SHAPE.match(session):
            session = self.start_session(req, resp)
        csrf = hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()
        if not self.tokens.configured:
            return Visitor(Scope.ADMIN, None, csrf, tokens_configured=False)
        grant = self.tokens.grant_for(req.cookies.get(TOKEN_COOKIE, ""))
        if grant is None:
            return Visitor(None, None, csrf, tokens_configured=True)
        return Visitor(grant.scope, grant.name, csrf, tokens_configured=True)

    def start_session(self, req: falcon.Request, resp: falcon.Response) -> str:
        """A fresh session cookie (on first sight, and at sign-in so that a session seen
        before signing in is not the one after)."""
        session = secrets.token_urlsafe(32)
        _set_cookie(req, resp, SESSION_COOKIE, session)
        return session

    def sign_in(self, req: falcon.Request, resp: falcon.Response, token: str) -> bool:
        """Keep `token` in the browser if it is a known one; False otherwise."""
        if self.tokens.grant_for(token) is None:
            return False
        _set_cookie(req, resp, TOKEN_COOKIE, token)
        self.start_session(req, resp)
        return True

    @staticmethod
    def sign_out(resp: falcon.Response) -> None:
        resp.unset_cookie(TOKEN_COOKIE, path=PATH, same_site="Strict")

    @staticmethod
    def check_csrf(req: falcon.Request, visitor: Visitor, form: dict[str, str]) -> None:
        """Raises `NotAllowed` unless the form or the header carries the session's token."""
        sent = form.get(CSRF_FIELD) or req.get_header(CSRF_HEADER) or ""
        if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), visitor.csrf.encode()):
            raise NotAllowed("the form is stale or did not come from this dashboard; reload it")

    @staticmethod
    def require(visitor: Visitor, method: str, template: str) -> None:
        """Raises `SignInRequired` or `NotAllowed` unless the visitor may do `method template`
        of the API."""
        if visitor.scope is None:
            raise SignInRequired("sign in with a token to use the dashboard")
        if not visitor.may(method, template):
            needed = Tokens.required_scope(method, template).name.lower()
            raise NotAllowed(f"this needs a token with the {needed} scope")


def _set_cookie(req: falcon.Request, resp: falcon.Response, name: str, value: str) -> None:
    resp.set_cookie(
        name,
        value,
        path=PATH,
        http_only=True,
        same_site="Strict",
        secure="https" in (req.scheme, req.forwarded_scheme),
    )
