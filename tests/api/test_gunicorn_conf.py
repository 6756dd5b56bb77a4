"""`warren api`'s gunicorn settings (`api.gunicorn_conf`)."""

import gc

from api import gunicorn_conf


def test_a_worker_leaves_what_it_loaded_out_of_full_collections():
    try:
        gunicorn_conf.post_worker_init(worker=None)

        assert gc.get_freeze_count() > 10_000  # the modules, classes and app objects loaded
    finally:
        gc.unfreeze()
