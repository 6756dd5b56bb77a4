"""Bearer-token authentication: when `WARREN_API_TOKENS` is set, every route but `/health`
requires `Authorization: Bearer <token>`. /openapi.json is open too: it describes the API,
not anyone's jobs."""

import hmac

import falcon

from api.errors import Unauthorized

OPEN_PATHS = frozenset({"/health", "/openapi.json"})


class BearerTokens:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = [token.encode() for token in tokens]

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self.tokens or req.path in OPEN_PATHS:
            return
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not any(
            hmac.compare_digest(token.strip().encode(), known) for known in self.tokens
        ):
            raise Unauthorized("a valid bearer token is required")
