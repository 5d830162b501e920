"""JSON Schema of profile.json ("vifwire-profile/1"); prose in SCHEMA.md.

Kept as data so tests (and any consumer) can validate a profile with
`jsonschema.validate(doc, PROFILE_SCHEMA)`. All durations are milliseconds,
all CPU figures seconds, all timestamps host wall-clock seconds.
"""

from __future__ import annotations

from typing import Any

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}

_STATS: dict[str, Any] = {
    "type": "object",
    "required": ["from", "to", "n"],
    "properties": {
        "from": {"type": "string"}, "to": {"type": "string"},
        "n": {"type": "integer", "minimum": 0},
        **{k: _NUM for k in ("min", "p50", "p90", "p99", "max", "mean")},
    },
    "if": {"properties": {"n": {"minimum": 1}}},
    "then": {"required": ["min", "p50", "p90", "p99", "max"]},
}

_SERIES_POINT = {
    "type": "object",
    "required": ["t", "cpu_s", "cpu_pct", "rss"],
    "properties": {"t": _NUM, "cpu_s": _NUM, "cpu_pct": _NUM, "rss": {"type": "integer"}},
}
_SYSTEM_POINT = {
    "type": "object",
    "required": ["t", "usr", "sys", "idle", "mem_used", "mem_free"],
    "properties": {k: _NUM for k in ("t", "usr", "sys", "idle", "wai", "mem_used", "mem_free",
                                     "mem_available")},
}

PROFILE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vifwire profile",
    "type": "object",
    "required": ["schema", "clock", "source", "visible_stages", "unobserved_stages", "ports",
                 "transitions", "dominant", "stragglers", "cpu", "resources", "sql",
                 "cprofile", "storm"],
    "properties": {
        "schema": {"const": "vifwire-profile/1"},
        "clock": {"type": "string"},
        "source": {"enum": ["embedded", "external"]},
        "components": {"type": "array", "items": {"type": "string"}},
        "visible_stages": {"type": "array", "items": {"type": "string"}},
        "unobserved_stages": {"type": "array", "items": {"type": "string"}},
        "visibility_note": {"type": "string"},
        "window": {"type": ["array", "null"], "items": _NUM},
        "ports": {"type": "object",
                  "additionalProperties": {"type": "object", "additionalProperties": _NUM}},
        "transitions": {"type": "object", "additionalProperties": _STATS},
        "dominant": {
            "type": "object",
            "required": ["span", "transition", "p50_ms", "share", "p50_total_ms", "shares"],
            "properties": {"span": {"type": "string"}, "transition": _STR_OR_NULL,
                           "p50_ms": _NUM_OR_NULL, "share": _NUM_OR_NULL,
                           "p50_total_ms": _NUM,
                           "shares": {"type": "object", "additionalProperties": _NUM}},
        },
        "stragglers": {"type": "array", "items": {
            "type": "object",
            "required": ["port", "total_ms", "worst", "worst_ms", "transitions_ms"],
            "properties": {"port": {"type": "string"}, "total_ms": _NUM, "worst": _STR_OR_NULL,
                           "worst_ms": _NUM_OR_NULL,
                           "transitions_ms": {"type": "object", "additionalProperties": _NUM}},
        }},
        "busiest": {"type": "object", "properties": {
            "t": _NUM_OR_NULL, "in_flight": {"type": "integer"},
            "ports": {"type": "array", "items": {"type": "string"}}}},
        # seconds/per_vm/window: the storm only (to the last network-vif-plugged, as
        # bench/storm.py counts); "whole": the sampler's whole run, teardown included.
        "cpu": {"type": ["object", "null"],
                "required": ["seconds", "per_vm", "vms", "window_s", "includes", "whole",
                             "profiler"],
                "properties": {"seconds": {"type": "object", "additionalProperties": _NUM},
                               "per_vm": {"type": "object", "additionalProperties": _NUM},
                               "vms": {"type": "integer"}, "window_s": _NUM,
                               "window": {"type": "array", "items": _NUM},
                               "includes": {"type": "string"},
                               "whole": {"type": "object",
                                         "required": ["seconds", "per_vm", "window_s",
                                                      "includes"]},
                               "profiler": {"type": "object",
                                            "required": ["sampler_cpu_s", "note"]}}},
        "resources": {"type": ["object", "null"],
                      "required": ["interval", "ncpu", "components", "samples", "system"],
                      "properties": {
                          "interval": {"type": "number", "maximum": 0.25},
                          "ncpu": {"type": "integer"},
                          "components": {"type": "object", "additionalProperties": {
                              "type": "array", "items": {"type": "integer"}}},
                          "samples": {"type": "object", "additionalProperties": {
                              "type": "array", "items": _SERIES_POINT}},
                          "system": {"type": "array", "items": _SYSTEM_POINT}}},
        "sql": {"type": ["object", "null"],
                "required": ["statements", "build_s", "execute_s", "cache", "cache_hit_ratio"],
                "properties": {"statements": {"type": "integer"}, "build_s": _NUM,
                               "execute_s": _NUM, "cache_hit_ratio": _NUM_OR_NULL,
                               "build_share": _NUM_OR_NULL, "per_port": _NUM_OR_NULL,
                               "cache": {"type": "object",
                                         "additionalProperties": {"type": "integer"}},
                               "top": {"type": "array", "items": {
                                   "type": "object",
                                   "required": ["sql", "count", "build_s", "execute_s"]}}}},
        "cprofile": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["file", "top"],
            "properties": {"top": {"type": "array", "items": {
                "type": "object",
                "required": ["function", "where", "ncalls", "tottime_s", "cumtime_s"]}}}}},
        "storm": {"type": ["object", "null"]},
    },
}
