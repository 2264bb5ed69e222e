"""moto_server for the local stack, without three per-request costs that model nothing.

Same arguments as the venv's `moto_server`. moto (pinned in requirements.txt) serves one
request at a time under Python's GIL, so whatever it spends per request is latency for every
caller queued behind it: on this stack most of it went to three things AWS has no counterpart
for. Profiled with py-spy while the throughput benchmark ran (docs/architecture.md,
"The local world"):

- every request lists moto's package directory (about 150 `isdir` calls) to look up its
  backend by host name: the listing cannot change while the process runs, so it is taken once;
- every event delivered to a rule target (each End report, each health event) compiles the
  eight JSONPath expressions of the default input template with a freshly generated yacc
  parser: a compiled expression is immutable, so the compilation is cached by its text;
- werkzeug writes a log line for every request: only warnings and errors are kept.

Nothing moto answers changes: the same functions give the same results, only once. If a moto
upgrade moves these functions, the launcher says so on stderr and serves unchanged (slower).
"""

import functools
import logging
import sys


def _cache_module_listing() -> str:
    import moto.backends

    listing = getattr(moto.backends, "list_of_moto_modules", None)
    if listing is None:
        return "moto.backends.list_of_moto_modules not found"
    modules = tuple(listing())
    # Callers test membership and iterate: a tuple serves both, as the generator did.
    moto.backends.list_of_moto_modules = lambda: modules
    return ""


def _cache_jsonpath() -> str:
    try:
        import jsonpath_ng.ext
    except ImportError as e:
        return f"jsonpath_ng.ext not importable ({e})"
    compile_uncached = getattr(jsonpath_ng.ext, "parse", None)
    if compile_uncached is None:
        return "jsonpath_ng.ext.parse not found"
    cached = functools.lru_cache(maxsize=1024)(compile_uncached)

    def parse(path, debug=None):
        try:
            return cached(path, debug)
        except TypeError:  # an unhashable argument: compile as before
            return compile_uncached(path, debug)

    # moto.events imports `parse` from the module at each call, so it sees this one.
    jsonpath_ng.ext.parse = parse
    return ""


def main() -> int:
    for skipped in (_cache_module_listing(), _cache_jsonpath()):
        if skipped:
            print(f"moto_server.py: {skipped}; serving without that cache", file=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main as moto_main

    sys.argv[0] = "moto_server"
    return moto_main()


if __name__ == "__main__":
    sys.exit(main())
