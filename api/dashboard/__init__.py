"""The city's dashboard: static pages served by the API process at ``/`` (same origin, same
bearer tokens), one-time sign-in links, and the few read routes its pages need."""

from api.dashboard.routes import install

__all__ = ["install"]
