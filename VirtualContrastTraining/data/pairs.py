"""LE/DES pairs named any way, found by a file-name pattern: `import PATH --pairs PATTERN`.

Why: exports from viewers and research datasets name pairs in their own way
(`<id>_<view>_LE.png` / `<id>_<view>_DES.png` is common); without this a user
had to write the manifest by hand. A pattern names the parts of a file name:

- `{id}` (required): the patient, written to patient_id; case ids are
  `{id}`, `_{side}` and `_{view}` joined, so they are the same on every import;
- `{role}` (required): which image the file is, one of the tokens of `roles`
  (default LE, DES, and mask or lesion for an optional lesion mask);
- `{side}` (L, R, left, right) and `{view}` (CC, MLO), optional: else empty;
- `{any}`: any text, ignored.

The pattern is matched against each file's path relative to PATH when it holds
a "/", else against the file name; the rest of the pattern is literal text.
Files that do not match are counted in one problem line; an LE without its DES
(or a DES without its LE) is left out, all of them listed in one line.
"""

from __future__ import annotations

import os
import re
import string
from collections import defaultdict
from pathlib import Path

from VirtualContrastTraining.data.importer import ImportReport
from VirtualContrastTraining.data.manifest import Case, write_manifest
from VirtualContrastTraining.errors import InputError

ROLES = ("LE", "DES", "mask")
DEFAULT_ROLES = {"LE": "LE", "DES": "DES", "mask": "mask", "lesion": "mask"}  # token in the name -> role
FIELDS = {"id": r"[^/]+?", "side": r"(?i:left|right|l|r)", "view": r"(?i:cc|mlo)", "any": r"[^/]*?"}
SIDES = {"l": "L", "left": "L", "r": "R", "right": "R"}
EXAMPLES = 5  # file names shown in one summary line


def parse_roles(text: str | None) -> dict[str, str]:
    """{token: role} from "LE=low,DES=rec,mask=roi" (role=token, comma-separated); the default without text."""
    if text is None:
        return dict(DEFAULT_ROLES)
    tokens = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        role, _, token = item.partition("=")
        role = {"lesion": "mask"}.get(role.strip(), role.strip())
        if role not in ROLES or not token.strip():
            raise InputError(None, f"--roles {text!r}: expected ROLE=TOKEN items with ROLE one of "
                                   f"{', '.join(ROLES)} (e.g. LE=low,DES=recombined)")
        tokens[token.strip()] = role
    missing = [r for r in ("LE", "DES") if r not in tokens.values()]
    if missing:
        raise InputError(None, f"--roles {text!r} names no token for {' and '.join(missing)}")
    return tokens


def compile_pattern(pattern: str, roles: dict[str, str]) -> re.Pattern:
    """The regular expression of a pattern (see the module docstring); InputError naming what is wrong."""
    parts, seen = [], []
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise InputError(None, f"--pairs {pattern!r}: {exc}") from None
    for literal, name, spec, _ in parsed:
        parts.append(re.escape(literal))
        if name is None:
            continue
        if name not in (*FIELDS, "role") or spec:
            raise InputError(None, f"--pairs {pattern!r}: unknown field {{{name}}}: use {{id}}, {{role}}, "
                                   "{side}, {view}, {any}")
        if name in seen and name != "any":
            raise InputError(None, f"--pairs {pattern!r}: {{{name}}} given twice")
        seen.append(name)
        if name == "role":
            tokens = sorted(roles, key=len, reverse=True)
            parts.append("(?P<role>" + "|".join(map(re.escape, tokens)) + ")")
        else:
            parts.append(FIELDS[name] if name == "any" else f"(?P<{name}>{FIELDS[name]})")
    missing = [f"{{{n}}}" for n in ("id", "role") if n not in seen]
    if missing:
        raise InputError(None, f"--pairs {pattern!r} lacks {' and '.join(missing)}: e.g. \"{{id}}_{{view}}_{{role}}"
                               ".png\"")
    return re.compile("".join(parts))


def _listed(paths: list[str]) -> str:
    more = f" and {len(paths) - EXAMPLES} more" if len(paths) > EXAMPLES else ""
    return f"{len(paths)}: {', '.join(paths[:EXAMPLES])}{more}"


def _match(root: Path, regex: re.Pattern, whole_path: bool, roles: dict[str, str], skipped: list) -> dict:
    """{(id, side, view): {role: path}} of the files under `root` the pattern matches."""
    found: dict[tuple[str, str, str], dict[str, Path]] = defaultdict(dict)
    unmatched = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.relative_to(root).as_posix() if whole_path else path.name
        m = regex.fullmatch(text)
        if m is None:
            unmatched.append(path.name)
            continue
        fields = m.groupdict()
        key = (fields["id"], SIDES.get((fields.get("side") or "").lower(), ""), (fields.get("view") or "").upper())
        role = roles[fields["role"]]
        if role in found[key]:
            skipped.append((f"{path} (and {found[key][role]})", f"two {role} files for one case: the first is used"))
            continue
        found[key][role] = path
    if unmatched:
        skipped.append((_listed(unmatched), "files that do not match the pattern: ignored"))
    return found


def import_pairs(root: str | os.PathLike, out_manifest: str | os.PathLike, pattern: str,
                 roles: dict[str, str] | None = None) -> ImportReport:
    """Pair the files under `root` named by `pattern` and write `out_manifest`; the report lists what was left out.

    InputError for a bad pattern, a missing folder, no file matching, or no complete LE/DES pair.
    """
    root, roles = Path(root), roles or dict(DEFAULT_ROLES)
    regex = compile_pattern(pattern, roles)
    if not root.is_dir():
        raise InputError(root, "folder of LE/DES files not found")
    skipped: list[tuple[str, str]] = []
    found = _match(root, regex, "/" in pattern, roles, skipped)
    if not found:
        raise InputError(root, f"no file matches --pairs {pattern!r} (tokens for {{role}}: {', '.join(roles)})")
    cases, alone = [], {"LE": [], "DES": []}
    for (pid, side, view), files in sorted(found.items()):
        if "LE" not in files or "DES" not in files:
            for role, path in files.items():
                if role in alone:
                    alone[role].append(path.name)
            continue
        cases.append(Case(case_id="_".join(filter(None, (pid, side, view))), patient_id=pid,
                          le_path=str(files["LE"]), des_path=str(files["DES"]),
                          lesion_path=str(files.get("mask", "")), laterality=side, view=view))
    for role, other in (("LE", "DES"), ("DES", "LE")):
        if alone[role]:
            skipped.append((_listed(alone[role]), f"{role} without its {other}: left out"))
    if not cases:
        raise InputError(root, f"no complete LE/DES pair matches --pairs {pattern!r}"
                               + "".join(f"; {reason} ({where})" for where, reason in skipped[-2:]))
    write_manifest(out_manifest, cases)
    return ImportReport(cases=cases, skipped=skipped, manifest_path=Path(out_manifest))
