"""The HTTP layer.

The blueprint and its variants, request hooks, CORS, ingest, OpenAPI, the inbox page.
"""
