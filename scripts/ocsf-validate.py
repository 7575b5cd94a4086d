#!/usr/bin/env python3
"""Validates OCSF JSON lines (the OCSF sink's output) against the OCSF schema bundled in the
`ocsf-json-schema` package, offline: each line must be a Detection Finding of the version it
declares in `metadata.version`, with the profiles it declares in `metadata.profiles`.

Usage: ocsf-validate.py FILE...   Exit status 1 and one message per problem when any line fails.
"""
import json
import sys

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

_schemas = {}


def validator(version, profiles):
    key = (version, tuple(sorted(profiles)))
    if key not in _schemas:
        embedded = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
        schema = embedded.get_class_schema(class_name="detection_finding", profiles=list(profiles))
        _schemas[key] = Draft202012Validator(schema)
    return _schemas[key]


def problems(event):
    metadata = event.get("metadata") or {}
    version = metadata.get("version")
    if not isinstance(version, str):
        return ["metadata.version is missing"]
    found = []
    for error in validator(version, metadata.get("profiles") or []).iter_errors(event):
        where = "/".join(str(p) for p in error.absolute_path) or "(event)"
        found.append(f"{where}: {error.message}")
    # What the JSON schema cannot say: the type is the class and the activity.
    if event.get("type_uid") != event.get("class_uid", 0) * 100 + event.get("activity_id", -1):
        found.append("type_uid is not class_uid * 100 + activity_id")
    return found


def main(paths):
    failed = 0
    checked = 0
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                checked += 1
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as error:
                    print(f"{path}:{number}: not JSON: {error}")
                    failed += 1
                    continue
                for problem in problems(event):
                    print(f"{path}:{number}: {problem}")
                    failed += 1
    print(f"ocsf-validate: {checked} events, {failed} problems")
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
