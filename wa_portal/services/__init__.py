"""The domain: every use case is a typed function here; views and jobs only call these."""
