"""Blueprints: read the form, call one service, render."""
