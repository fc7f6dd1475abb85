"""YAML as configs need it: a key given twice is an error, not silently the last one.

PyYAML (like the YAML spec's lenient readers) keeps the last of two equal keys, so a config that sets
``stride`` twice, or an edited copy that still holds the old ``learning_rate`` lower down, would run with
a value the user may not have meant. Every config reader in actionmd loads through ``safe_load`` here.
"""
from __future__ import annotations

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"  # "<<: *anchor" may repeat keys on purpose


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                continue
            if seen is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen}); YAML would silently keep "
                    "only the last one: remove or rename one of them", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def safe_load(text: str):
    """``yaml.safe_load``, but a mapping that repeats a key raises ``yaml.YAMLError`` naming key and lines."""
    return yaml.load(text, Loader=_UniqueKeyLoader)
