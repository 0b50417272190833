"""Reads wrk --latency output on stdin; prints 'p50_ms p99_ms req_per_s errors'."""

from __future__ import annotations

import re
import sys


def ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return round(float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


text = sys.stdin.read()
p50 = ms(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
p99 = ms(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
errors = 0
if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
    errors += int(m.group(1))
if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
    errors += sum(int(x) for x in m.groups())
print(p50, p99, round(rps), errors)
