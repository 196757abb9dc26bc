"""Pure building blocks: SSE framing, serialisers, tokens, request models, errors (no Flask globals)."""
