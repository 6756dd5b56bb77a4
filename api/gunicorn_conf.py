"""gunicorn's settings for `warren api` (`gunicorn -c python:api.gunicorn_conf`): its own
lines (boot, workers, errors) in Warren's log format, through the same configuration as every
Warren process (`service.logs`). Access lines come from the app (`api.requestids`), unless
`WARREN_ACCESS_LOG=false` turns them off."""

from service import logs
from service.settings import Settings

_settings = Settings()
logconfig_dict = logs.dict_config(
    logs.resolve(_settings.log_format), access_log=_settings.access_log
)
