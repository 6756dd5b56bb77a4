"""`GET /embeddings/search`: the stored keys of a namespace nearest a text."""

from typing import Annotated

import falcon
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.requests import query_params
from service import embeddings
from service.client import Warren
from service.errors import BadRequest
from service.queries import query_error
from service.strict import Whole


class SearchQuery(BaseModel):
    """`namespace`, `text` and `k` (default 10, at most 100)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
    text: str = Field(min_length=1, max_length=8192)
    k: Annotated[int, Field(ge=1, le=100), Whole] = 10


class Search:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            query = SearchQuery.model_validate(query_params(req))
        except ValidationError as exc:
            raise BadRequest(query_error(exc, "namespace, text, k")) from None
        settings = self.warren.settings
        results = embeddings.nearest(settings, query.namespace, query.text, query.k)
        resp.media = {"success": True, "results": results}
