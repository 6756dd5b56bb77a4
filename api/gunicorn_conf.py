"""gunicorn's settings for `warren api` (`gunicorn -c python:api.gunicorn_conf`): its own
lines (boot, workers, errors) in Warren's log format, through the same configuration as every
Warren process (`service.logs`). Access lines come from the app (`api.requestids`), unless
`WARREN_ACCESS_LOG=false` turns them off."""

import gc
import os
import secrets

from gunicorn import glogging

from service import logs
from service.settings import Settings


class Logger(glogging.Logger):
    """gunicorn's logger without gunicorn's access line. Configured through `logconfig_dict`,
    gunicorn builds one for every request (its atoms and a log record) even for a logger that
    writes nowhere, at a cost in CPU to every request; Warren's line is the app's."""

    def access(self, resp, req, environ, request_time) -> None:
        """Nothing: `api.requestids` writes the request's access line."""


def post_worker_init(worker: object) -> None:
    """Once a worker has loaded the app, move everything it holds (modules, classes, the
    app's objects, some hundred thousand of them) out of the garbage collector's sight
    (`gc.freeze`): they live as long as the process, yet every full collection walked them
    all, and a request that allocates much (a page of 500 jobs) set off one every few
    requests, each a pause of all the worker's threads."""
    gc.freeze()


_settings = Settings()
if _settings.secret_key is None and not _settings.api_tokens:
    # The dashboard's CSRF key, drawn here in the master so that every worker shares it.
    os.environ.setdefault("WARREN_UI_CSRF_KEY", secrets.token_urlsafe(32))
logconfig_dict = logs.dict_config(
    logs.resolve(_settings.log_format), access_log=_settings.access_log
)
logger_class = Logger
