"""WSGI entry point: gunicorn wsgi:app, flask --app wsgi …"""

from wa_portal import create_app

app = create_app()
