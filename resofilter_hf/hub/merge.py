"""Fold a freshly rendered card into one already on the Hub or on disk, keeping what a person wrote.

Generated sections sit between ``resofilter-hf:begin/end`` comment markers; `merge_card` replaces those and the
metadata this library owns, and leaves every other line of the old card as it was.
"""

import re
from typing import Any

import yaml
from huggingface_hub import DatasetCard, RepoCard
from huggingface_hub.repocard import REGEX_YAML_BLOCK


SECTION = re.compile(r"<!-- resofilter-hf:begin (\S+) -->.*?<!-- resofilter-hf:end \1 -->\n?", re.S)


_LIST_KEYS = ("tags", "datasets")  # union of old and new


_OWNED_KEYS = ("configs", "size_categories")  # ours: replaced (configs merged by name)


def merge_card(old: str, new: str, card_class: type[RepoCard] = DatasetCard) -> str:
    """`new`'s generated sections and metadata folded into the existing card text `old`.

    Metadata: ``configs`` are replaced by name (configs only `old` has stay) and the ``dataset_info`` of replaced
    configs is dropped (it would disagree with the new files), ``size_categories`` is replaced,
    ``tags``/``datasets`` are unions, any other key keeps `old`'s value and only fills in what `old` lacks.
    Body: each marked section of `old` is replaced by `new`'s (or removed when `new` no longer has it); `new`'s
    sections that `old` lacks go after the section that precedes them in `new` (at the end when there is none);
    all other text of `old` -- title, prose a person wrote -- is kept as it is.
    """
    old_card, new_card = card_class(old), card_class(new)
    old_data, new_data = old_card.data.to_dict(), new_card.data.to_dict()
    data = dict(old_data)
    for key, value in new_data.items():
        if key == "configs":
            ours = {c["config_name"]: c for c in value}
            theirs = [c for c in old_data.get("configs") or [] if c.get("config_name") not in ours]
            if any(c.get("default") for c in value):
                theirs = [{k: v for k, v in c.items() if k != "default"} for c in theirs]
            data["configs"] = [*value, *theirs]
            _drop_dataset_info(data, set(ours))
        elif key in _OWNED_KEYS:
            data[key] = value
        elif key in _LIST_KEYS and isinstance(value, list):
            data[key] = list(dict.fromkeys([*(old_data.get(key) or []), *value]))
        elif data.get(key) is None:
            data[key] = value
    body = _merge_sections(old_card.text, new_card.text)
    block = REGEX_YAML_BLOCK.search(old)
    order = list(yaml.safe_load(block.group(2)) or {}) if block else []  # the key order of old's YAML
    yaml_text = type(new_card.data)(**data).to_yaml(original_order=order)
    return f"---\n{yaml_text}\n---\n{body}"


def _drop_dataset_info(data: dict[str, Any], configs: set[str]) -> None:
    """Remove the ``dataset_info`` entries (split sizes, features) of `configs`: they describe files that are being
    replaced, and `datasets` checks split sizes against them."""
    info = data.get("dataset_info")
    if info is None:
        return
    entries = [info] if isinstance(info, dict) else list(info)
    kept = [e for e in entries if e.get("config_name", "default") not in configs]
    if not kept:
        data.pop("dataset_info")
    else:
        data["dataset_info"] = kept[0] if isinstance(info, dict) else kept


def _merge_sections(old: str, new: str) -> str:
    new_sections = {m.group(1): m.group(0) for m in SECTION.finditer(new)}
    order = list(new_sections)
    seen: list[str] = []

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in new_sections or name in seen:
            return ""
        seen.append(name)
        return new_sections[name] if new_sections[name].endswith("\n") else new_sections[name] + "\n"

    body = SECTION.sub(replace, old)
    for k, name in enumerate(order):
        if name in seen:
            continue
        before = next((p for p in reversed(order[:k]) if p in seen), None)
        block = new_sections[name]
        if before is None:
            after = next((p for p in order[k + 1 :] if p in seen), None)
            if after is None:
                body = body.rstrip("\n") + "\n\n" + block
            else:
                start = body.index(f"<!-- resofilter-hf:begin {after} -->")
                body = body[:start] + block + "\n" + body[start:]
        else:
            end_marker = f"<!-- resofilter-hf:end {before} -->"
            end = body.index(end_marker) + len(end_marker)
            body = body[:end] + "\n\n" + block.rstrip("\n") + body[end:]
        seen.append(name)
    return body
