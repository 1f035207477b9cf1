"""Broadcasts and emergency alerts."""
