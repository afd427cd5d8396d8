"""Each stage's code deps in ``dvc.yaml``, derived from what its flow imports, never listed by hand.

A stage's code is every project module its ``flows/<stage>.py`` imports, directly or through other project
modules, at any depth (imports inside functions too), less the plumbing that cannot change what it writes
(:data:`PLUMBING`: params parsing and declarations, tracking, locks, progress, the lifecycle). A folder
whose ``__init__.py`` runs is listed as the folder.

``python -m scripts.stage_deps``          prints what would change in ``dvc.yaml``
``python -m scripts.stage_deps --write``  rewrites the code lines of every stage's ``deps:`` in place
``tests/test_layout.py`` fails when ``dvc.yaml`` and the derivation disagree.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shapprune", "tasks", "flows")
# Modules that run around a stage's work but do not shape its outputs: DVC tracks params.yaml itself (the schema
# only validates it), and tracking, locks, progress bars and the lifecycle's order leave the files alike.
PLUMBING = (
    "shapprune/config",
    "tasks/shared/stage_inputs.py",
    "tasks/shared/runtime.py",
    "tasks/shared/lifecycle.py",
    "tasks/shared/tracking.py",
    "tasks/shared/mlflow_runs.py",
    "tasks/shared/guards.py",
    "tasks/shared/progress.py",
)
CODE_PREFIXES = tuple(f"{p}/" for p in PACKAGES)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _is_plumbing(rel: str) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in PLUMBING)


def module_file(name: str) -> Path | None:
    """The file of project module ``name`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``); None if not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def imports_of(path: Path) -> tuple[Path, ...]:
    """The project modules ``path`` imports (``from a import b`` counts ``a.b`` when it is a module, else ``a``)."""
    found: set[Path] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package
                parts = package.split(".")[: -node.level] if path.name != "__init__.py" else package.split(".")
                parts = parts[: len(parts) - node.level + 1] if path.name == "__init__.py" else parts
                base = ".".join([*parts, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            for candidate in (name, name.rsplit(".", 1)[0]):
                found |= {f for f in [module_file(candidate)] if f is not None}
                if module_file(candidate) is not None:
                    break
    for parent in list(found):  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
        for up in parent.relative_to(ROOT).parents:
            init = ROOT / up / "__init__.py"
            if up != Path(".") and init.is_file():
                found.add(init)
    return tuple(sorted(found - {path}))


def stage_code(stage: str) -> list[str]:
    """Every non-plumbing project file that ``flows/<stage>.py`` runs, as paths relative to the project root."""
    start = ROOT / "flows" / f"{stage}.py"
    seen, todo = {start}, [start]
    while todo:
        for dep in imports_of(todo.pop()):
            if dep not in seen and not _is_plumbing(_rel(dep)):
                seen.add(dep)
                todo.append(dep)
    return sorted(_rel(p) for p in seen if not p.name == "__init__.py" or p.stat().st_size > 0)


def collapse(files: list[str]) -> list[str]:
    """A package whose ``__init__.py`` the stage runs is listed as its folder (its ``__init__`` decides which of its
    modules run; a change to any may change the stage's outputs), outermost first; other files as themselves."""
    packages = sorted((str(Path(f).parent) for f in files if f.endswith("/__init__.py")), key=len)
    chosen: list[str] = []
    for package in packages:
        if package not in PACKAGES and not any(package.startswith(c + "/") for c in chosen):
            chosen.append(package)
    return sorted(chosen + [f for f in files if not any(f.startswith(c + "/") for c in chosen)])


def derived_deps(stage: str) -> list[str]:
    """The code lines ``dvc.yaml`` should hold for ``stage``."""
    return collapse(stage_code(stage))


def declared_deps(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """The code deps each stage of ``dvc_yaml`` lists (``foreach`` stages: their ``do`` body's)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, body in stages.items():
        body = body.get("do", body)
        out[name] = [d for d in body.get("deps") or [] if str(d).startswith(CODE_PREFIXES)]
    return out


def rewrite(text: str, wanted: dict[str, list[str]]) -> str:
    """``dvc.yaml``'s text with each stage's code deps replaced by ``wanted[stage]`` (data deps kept, after)."""
    lines, out, stage, i = text.splitlines(), [], None, 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"^  (\w+):\s*$", line):
            stage = m.group(1)
        if stage in wanted and re.match(r"^\s+deps:\s*$", line):
            out.append(line)
            indent = " " * (len(line) - len(line.lstrip()) + 2)
            i += 1
            kept = []
            while i < len(lines) and lines[i].startswith(indent + "- "):
                item = lines[i].strip()[2:]
                if not item.startswith(CODE_PREFIXES):
                    kept.append(lines[i])
                i += 1
            out += [f"{indent}- {dep}" for dep in wanted[stage]] + kept
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stage_deps", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    args = parser.parse_args(argv)
    path = ROOT / "dvc.yaml"
    declared = declared_deps(path)
    wanted = {stage: derived_deps(stage) for stage in declared}
    stale = {s: (declared[s], w) for s, w in wanted.items() if declared[s] != w}
    for stage, (have, want) in stale.items():
        print(f"{stage}: + {sorted(set(want) - set(have))}  - {sorted(set(have) - set(want))}")
    if args.write and stale:
        path.write_text(rewrite(path.read_text(), wanted))
        print(f"dvc.yaml: code deps of {len(stale)} stages rewritten")
    return 0 if args.write or not stale else 1


if __name__ == "__main__":
    sys.exit(main())
