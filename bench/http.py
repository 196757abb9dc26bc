"""Benchmark: throughput and tails under concurrency, against an empty endpoint on the same server.

    python bench/http.py            # the full run (about 20 minutes)
    python bench/http.py --quick    # 10 k rows, 2 workers, 32 connections (about a minute)
    python bench/http.py --help     # sizes, worker counts, connections, endpoints

The benchmark itself is in ``http_load.py`` (read its docstring). This file only starts it,
and lets the other scripts of this folder import the standard library's ``http``: they run
with this folder first on ``sys.path``, where this file's name shadows that package.
"""
from __future__ import annotations

import os
import sys

if __name__ == "http":
    # Imported as ``http`` by a script of this folder: load the real package in its place.
    import importlib.util

    _init = os.path.join(os.path.dirname(os.__file__), "http", "__init__.py")
    _spec = importlib.util.spec_from_file_location(
        "http", _init, submodule_search_locations=[os.path.dirname(_init)])
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["http"] = _module
    _spec.loader.exec_module(_module)

if __name__ == "__main__":
    # This folder last, so that ``http`` is the standard library's and ``common`` still ours.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here] + [_here]
    from http_load import main

    main()
