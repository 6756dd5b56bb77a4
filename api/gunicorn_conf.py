"""gunicorn's settings for `warren api` (`gunicorn -c python:api.gunicorn_conf`): its own
lines (boot, workers, errors) in Warren's log format, through the same configuration as every
Warren process (`service.logs`). Access lines come from the app (`api.requestids`)."""

from service import logs
from service.settings import Settings

logconfig_dict = logs.dict_config(logs.resolve(Settings().log_format))
