"""Coverage-guided fuzzing of the filter parser with atheris (``make fuzz``).

Any input must either compile, or be refused with ``InvalidFilter`` naming
``filters[i]``; a compiled matcher must answer True or False for an event. Anything
else (another exception, a crash) is a finding. Run ``python fuzz/filters.py -help=1``
for libFuzzer's options (``-max_total_time=60``, ``-runs=N``, a corpus directory).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from broadcaster._core._errors import InvalidFilter
    from broadcaster._core._filters import compile_filters
    from broadcaster._core._types import Event

_EVENTS = [
    Event("default", "/tasks/exit", b'{"pid": 1}', "application/json", {"app": "web"}, 0, 1,
          0.0, 10),
    Event("k8s.io", "/a/b", b"", "", {"io.k8s.pod": "p", "x": "a" * 40}, 0, 2, 0.0, 10),
]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    filters = [fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
               for _ in range(fdp.ConsumeIntInRange(0, 3))]
    try:
        matcher = compile_filters(filters)
    except InvalidFilter as exc:
        if not exc.field.startswith("filters["):
            raise AssertionError(f"error does not name filters[i]: {exc}") from None
        return
    if matcher is not None:
        for event in _EVENTS:
            if matcher(event) not in (True, False):
                raise AssertionError(f"matcher answered neither True nor False: {filters}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
