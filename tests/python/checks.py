"""What the end-to-end checks share: a named check that counts failures.

    from checks import check, failed
    check("the answer", got == want, (got, want))
    raise SystemExit(1 if failed() else 0)
"""

_failures = 0


def check(name, ok, detail=""):
    """Prints `ok` or `FAIL` with the name (and the detail on failure)."""
    global _failures
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))
    if not ok:
        _failures += 1


def failed():
    """How many checks failed so far."""
    return _failures
