"""The HTTP layer: the blueprint and its variants, request hooks, CORS, ingest, OpenAPI, the inbox page."""
