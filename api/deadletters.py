"""`/dlq`: the dead-letter inspector: list, group by fingerprint, replay, purge."""

import falcon

from api.requests import query_params, read_json
from api.views import dead_letter_group_json, dead_letter_json
from service.client import Warren
from service.deadletters import DeadLetterQuery


class DeadLetters:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Dead letters, newest first. Page on with `before=<nextBefore>`."""
        query = DeadLetterQuery.parse(query_params(req))
        letters = self.warren.dlq.list(**query.model_dump())
        resp.media = {
            "success": True,
            "count": len(letters),
            "messages": [dead_letter_json(letter) for letter in letters],
            "nextBefore": letters[-1].id if len(letters) == query.limit else None,
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Purge: body `{"jobIds": [...]}`, `{"fingerprint": ...}` or `{"all": true}`."""
        purged = self.warren.dlq.purge(read_json(req, self.warren.settings.max_payload_bytes))
        resp.media = {"success": True, "purged": purged}


class Groups:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        groups = self.warren.dlq.groups()
        resp.media = {"success": True, "groups": [dead_letter_group_json(g) for g in groups]}


class Replay:
    def __init__(self, warren: Warren) -> None:
        self.warren = warren

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Replay: the jobs return to `pending` with fresh attempts and run again."""
        replayed = self.warren.dlq.replay(read_json(req, self.warren.settings.max_payload_bytes))
        resp.status = falcon.HTTP_202
        resp.media = {"success": True, "replayed": replayed}
