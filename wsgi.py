"""WSGI entry point: gunicorn wsgi:app, flask --app wsgi …"""

import gc

from sqlalchemy.orm import configure_mappers

from wa_portal import create_app

app = create_app()

# What the process holds once started (modules, the app, mapped classes) lives as long as the
# process. Move it out of the garbage collector's reach: a full collection then walks only
# what requests made since, instead of ~150,000 objects at ~130 ms with every thread stopped,
# which was the slowest 1 % of webhook acknowledgements (tests/benchmarks/bench_webhooks.py).
configure_mappers()
gc.collect()
gc.freeze()
