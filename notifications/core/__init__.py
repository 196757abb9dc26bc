"""Pure building blocks (no Flask globals).

SSE framing, serialisers, tokens, request models, errors.
"""
