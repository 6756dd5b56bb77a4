"""Bearer tokens with scopes: when `WARREN_API_TOKENS` is set, every route but `/health`,
`/openapi.json` and the dashboard (`/ui`, which signs in with its own cookie) requires
`Authorization: Bearer <token>` with a scope the route allows.

Scopes, weakest first: `read` (GET and HEAD), `write` (read, and enqueue, patch, retry and
cancel jobs, one or in bulk), `admin` (everything: dead-letter replay and purge, schedule
writes, pausing and resuming tiers and types). A bare token in the setting is `admin`.

What other modules may rely on (the dashboard signs in with it):

- `Scope`, an `IntEnum`: `Scope.READ < Scope.WRITE < Scope.ADMIN`; a token may use a route
  when `scope >= Tokens.required_scope(method, template)`.
- `Tokens.from_settings(settings)`; `tokens.configured` is False when no token is set, and then
  every request is allowed.
- `tokens.scope_for(token)`: the scope of a presented token, or None for an unknown one,
  compared in constant time against every configured token.
- `Tokens.required_scope(method, template)`: the scope a route needs, from `ROUTE_SCOPES`
  (one table), `read` for GET/HEAD/OPTIONS and `admin` for any other unlisted route.
- `tokens.authorize(token, method, template)`: raises `Unauthorized` (401) or `Forbidden`
  (403), or returns the `Grant` (token name and scope; `admin` when no token is set).
  `authenticate(token)` and `check_scope(grant, method, template)` are its two halves.
"""

import enum
import hashlib
import hmac
import re
from typing import NamedTuple

import falcon

from api.errors import Forbidden, Unauthorized
from service.settings import Settings, parse_api_token


class Scope(enum.IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3


class Grant(NamedTuple):
    """Who a request is: the token's name (`#1` for the first bare token; `None` when no
    token is configured) and its scope."""

    name: str | None
    scope: Scope


#: Routes anyone may call. The dashboard's paths are under `/ui`, guarded by its own sign-in.
OPEN_PATHS = frozenset({"/health", "/openapi.json"})
DASHBOARD_PREFIX = "/ui"

#: The scope of every route that is not `read` (GET, HEAD, OPTIONS) or `admin` (anything else
#: unlisted): templates with each `{parameter}` written `{}`, whatever its name or converter.
ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    ("POST", "/jobs"): Scope.WRITE,
    ("POST", "/jobs/batch"): Scope.WRITE,
    ("PATCH", "/jobs/{}"): Scope.WRITE,
    ("DELETE", "/jobs/{}"): Scope.WRITE,
    ("POST", "/jobs/{}/retry"): Scope.WRITE,
    ("POST", "/jobs/cancel"): Scope.WRITE,
    ("POST", "/jobs/retry"): Scope.WRITE,
}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PARAMETER = re.compile(r"\{[^}]*\}")


def _digest(token: str) -> bytes:
    """Every token compared as a SHA-256 digest: same length, so the comparison time says
    nothing about a token's length either."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Tokens:
    """The configured tokens, each with a name and a scope."""

    def __init__(self, entries: list[str]) -> None:
        parsed = [parse_api_token(entry, position) for position, entry in enumerate(entries, 1)]
        self._known = [(_digest(t.token), t.name, Scope[t.scope.upper()]) for t in parsed]

    @classmethod
    def from_settings(cls, settings: Settings) -> "Tokens":
        return cls(settings.api_tokens)

    @property
    def configured(self) -> bool:
        return bool(self._known)

    def grant_for(self, token: str) -> Grant | None:
        """The name and scope of `token`, or None. Every configured token is compared, with
        no early exit, so the time taken does not say which one (if any) matched."""
        presented = _digest(token)
        found = None
        for digest, name, scope in self._known:
            if hmac.compare_digest(presented, digest):
                found = Grant(name, scope)
        return found

    def scope_for(self, token: str) -> Scope | None:
        grant = self.grant_for(token)
        return grant.scope if grant else None

    @staticmethod
    def required_scope(method: str, template: str) -> Scope:
        """The scope a route needs: `template` as Falcon has it (`/jobs/{job_id:uuid}`) or
        with bare `{}` parameters."""
        method = method.upper()
        key = (method, _PARAMETER.sub("{}", template))
        if key in ROUTE_SCOPES:
            return ROUTE_SCOPES[key]
        return Scope.READ if method in READ_METHODS else Scope.ADMIN

    def authenticate(self, token: str | None) -> Grant:
        """The grant of `token`, or `Unauthorized`; everyone is `admin` when no token is set."""
        if not self.configured:
            return Grant(None, Scope.ADMIN)
        grant = self.grant_for(token) if token else None
        if grant is None:
            raise Unauthorized("a valid bearer token is required")
        return grant

    @classmethod
    def check_scope(cls, grant: Grant, method: str, template: str) -> None:
        """`Forbidden` unless `grant` has the scope the route needs."""
        needed = cls.required_scope(method, template)
        if grant.scope < needed:
            raise Forbidden(
                f"token {grant.name!r} has the {grant.scope.name.lower()} scope;"
                f" {method.upper()} {_PARAMETER.sub(_bare, template)} needs"
                f" {needed.name.lower()}"
            )

    def authorize(self, token: str | None, method: str, template: str) -> Grant:
        """The grant of `token` for the route, or `Unauthorized` (no or unknown token) or
        `Forbidden` (a known token without the scope). Allows all when no token is set."""
        grant = self.authenticate(token)
        self.check_scope(grant, method, template)
        return grant


def _bare(parameter: re.Match) -> str:
    """`{job_id:uuid}` -> `{job_id}`, for messages."""
    return parameter.group(0).split(":", 1)[0].rstrip("}") + "}"


def bearer_token(req: falcon.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class BearerTokens:
    """Middleware: a request to a guarded path needs a valid token before anything else looks
    at it (401), and, once Falcon has routed it, the scope its route's template needs (403).
    `req.context.grant` is the `Grant` (None on an open path), for logs and handlers."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.grant = None
        if req.path in OPEN_PATHS or _is_dashboard(req.path):
            return
        req.context.grant = self.tokens.authenticate(bearer_token(req))

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource, params):
        # No route (a 404 follows): any valid token may learn that.
        if req.context.grant is not None and resource is not None and req.uri_template:
            self.tokens.check_scope(req.context.grant, req.method, req.uri_template)


def _is_dashboard(path: str) -> bool:
    return path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")
