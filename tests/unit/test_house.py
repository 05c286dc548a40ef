"""House rules that hold across the packages: the direction of imports, short docstrings.

The import rules are read from the source (``ast``; nothing is imported), so a
forbidden import fails here even inside a function or under ``TYPE_CHECKING``.
``docs/architecture.md`` explains the layers; its table is ``LAYERS`` below.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "house"

PACKAGES = ("streams", "projections", "sinks", "schemas")

# What every layer may import: the root modules of ``streams`` (which import no layer)
# and ``projections.errors``, the project's base exception.
_ROOT_MODULES = frozenset({"streams.settings", "streams.telemetry", "streams.kafka_security",
                           "projections.errors"})


@dataclass(frozen=True)
class Layer:
    """What a layer may import besides its own modules.

    ``may_import``: first-party packages or modules (a name covers its submodules).
    ``stdlib_only``: no third-party library at all.
    ``forbidden_libraries``: third-party top-level names it must not import.
    """

    may_import: frozenset[str]
    stdlib_only: bool = False
    forbidden_libraries: frozenset[str] = frozenset()


def _layer(
    *names: str, stdlib_only: bool = False, forbidden_libraries: tuple[str, ...] = ()
) -> Layer:
    return Layer(frozenset(names), stdlib_only, frozenset(forbidden_libraries))


# Layer -> what it may import (itself always). A module belongs to the longest
# layer name that prefixes it ("streams" itself only to streams/__init__.py: every
# folder of streams/ is a layer of its own). docs/architecture.md copies this table.
LAYERS: dict[str, Layer] = {
    # Pure domain rules: no I/O, no framework, no other package of the project.
    "projections": _layer(stdlib_only=True),
    # The Avro schemas and their loader.
    "schemas": _layer(),
    # ClickHouse: plans, stores, queries. Never the stream processor.
    "sinks": _layer("projections"),
    # The root modules of streams.
    "streams": _layer(*_ROOT_MODULES),
    "streams.settings": _layer(*_ROOT_MODULES),
    "streams.telemetry": _layer(*_ROOT_MODULES),
    "streams.kafka_security": _layer(*_ROOT_MODULES),
    # Faust hardening: knows nothing about campaigns.
    "streams.engine": _layer(*_ROOT_MODULES),
    # Encodings at the edge: input Avro, state, output Avro, dead letters, routing.
    "streams.codecs": _layer("projections", "schemas", *_ROOT_MODULES),
    # The stages and views as plain code: no Faust, no Kafka client.
    "streams.pipeline": _layer(
        "projections",
        "streams.codecs",
        *_ROOT_MODULES,
        forbidden_libraries=("faust", "mode", "aiokafka"),
    ),
    # What runs the ClickHouse sinks: batching, consumers, the child process.
    "streams.sink_runtime": _layer(
        "projections", "sinks", "streams.codecs", "streams.engine", *_ROOT_MODULES
    ),
    # The HTTP API and the campaign page.
    "streams.api": _layer("projections", "sinks", "streams.codecs", *_ROOT_MODULES),
    # The composition root: wires every layer but the CLI.
    "streams.app": _layer(
        "projections",
        "schemas",
        "sinks",
        "streams.settings",
        "streams.telemetry",
        "streams.kafka_security",
        "streams.engine",
        "streams.codecs",
        "streams.pipeline",
        "streams.sink_runtime",
        "streams.api",
    ),
    # The outermost layer: may use anything; nothing imports it.
    "streams.cli": _layer("projections", "schemas", "sinks", "streams"),
}


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the tree that was checked
    line: int
    statement: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if not self.statement:
            return f"{where}: {self.reason}"
        return f"{where}: `{self.statement}`: {self.reason}"


def _module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path, packages: tuple[str, ...]) -> Iterator[tuple[Path, str]]:
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            yield relative, _module_name(relative)


def layer_of(name: str) -> str | None:
    """The layer a first-party module belongs to: the longest ``LAYERS`` key prefixing it."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in LAYERS and (candidate != "streams" or end == len(parts)):
            return candidate
    return None


def _covers(allowed: str, name: str) -> bool:
    return name == allowed or name.startswith(allowed + ".")


def _imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[int, str, str]]:
    """``(line, dotted name, statement)`` of every import; ``from a import b`` names ``a.b``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                if not is_package:
                    package.pop()
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            written = "." * node.level + (node.module or "")
            for alias in node.names:
                name = base if alias.name == "*" else f"{base}.{alias.name}"
                yield node.lineno, name, f"from {written} import {alias.name}"


def import_violations(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[Violation]:
    """Every import under ``root/<package>`` that ``LAYERS`` does not allow."""
    found: list[Violation] = []
    for relative, module in _modules(root, packages):
        layer = layer_of(module)
        if layer is None:
            found.append(Violation(str(relative), 1, "", f"{module} is in no layer of LAYERS"))
            continue
        rule = LAYERS[layer]
        tree = ast.parse((root / relative).read_text(encoding="utf-8"), str(relative))
        for line, imported, statement in _imports(tree, module, relative.name == "__init__.py"):
            top = imported.split(".")[0]
            if top in PACKAGES:
                target = layer_of(imported)
                if target == layer or any(_covers(a, imported) for a in rule.may_import):
                    continue
                reason = f"{layer} may not import {target or 'an unknown layer'}"
            elif rule.stdlib_only and top not in sys.stdlib_module_names:
                reason = f"{layer} imports only the standard library"
            elif top in rule.forbidden_libraries:
                reason = f"{layer} may not import {top}"
            else:
                continue
            found.append(Violation(str(relative), line, statement, reason))
    return found


def test_imports_follow_the_layer_rules() -> None:
    violations = import_violations(ROOT)
    assert not violations, "forbidden imports (rules: LAYERS in this file):\n" + "\n".join(
        map(str, violations)
    )


def test_the_checker_reports_a_forbidden_import() -> None:
    """Negative control: an engine module importing the pipeline, beside an allowed one."""
    violations = import_violations(FIXTURES, ("streams",))
    assert [str(v) for v in violations] == [
        "streams/engine/bad.py:3: `from streams.pipeline.views import VIEWS`: "
        "streams.engine may not import streams.pipeline"
    ]


def test_the_checker_reports_libraries_relative_imports_and_unknown_folders(
    tmp_path: Path,
) -> None:
    files = {
        "projections/pure.py": "import statistics\nimport orjson\n",
        "streams/pipeline/stage.py": "from faust import App\nfrom . import views\n",
        "streams/pipeline/views.py": "from ..engine import positions\n",
        "streams/annex/thing.py": "X = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert [str(v) for v in import_violations(tmp_path)] == [
        "streams/annex/thing.py:1: streams.annex.thing is in no layer of LAYERS",
        "streams/pipeline/stage.py:1: `from faust import App`: "
        "streams.pipeline may not import faust",
        "streams/pipeline/views.py:1: `from ..engine import positions`: "
        "streams.pipeline may not import streams.engine",
        "projections/pure.py:2: `import orjson`: projections imports only the standard library",
    ]


def test_the_rule_table_names_real_layers_and_nothing_imports_the_cli() -> None:
    for layer, rule in LAYERS.items():
        for allowed in rule.may_import:
            assert (ROOT / allowed.replace(".", "/")).is_dir() or (
                ROOT / (allowed.replace(".", "/") + ".py")
            ).is_file(), f"{layer} may import {allowed}, which does not exist"
            if layer != "streams.cli":
                assert not _covers(allowed, "streams.cli") and not _covers(
                    "streams.cli", allowed
                ), f"{layer} may import the CLI"
    for layer in LAYERS:
        path = ROOT / layer.replace(".", "/")
        assert path.is_dir() or path.with_suffix(".py").is_file(), f"{layer} does not exist"


# --- module docstrings ------------------------------------------------------------------

MAX_DOCSTRING_LINES = 15
DOCSTRING_PACKAGES = ("streams", "sinks", "projections")


def docstring_lines(source: str) -> int:
    """The lines of the file the module docstring spans, quotes included (0: none)."""
    body = ast.parse(source).body
    if not body or not isinstance(body[0], ast.Expr):
        return 0
    node = body[0]
    if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
        return 0
    return (node.end_lineno or node.lineno) - node.lineno + 1


def test_module_docstrings_are_short() -> None:
    """Incident stories, measurements and run logs belong in docs/, linked from the code."""
    long = [
        f"{relative}: {lines} lines"
        for relative, _ in _modules(ROOT, DOCSTRING_PACKAGES)
        if (lines := docstring_lines((ROOT / relative).read_text(encoding="utf-8")))
        > MAX_DOCSTRING_LINES
    ]
    assert not long, f"module docstrings over {MAX_DOCSTRING_LINES} lines:\n" + "\n".join(long)


def test_the_docstring_check_counts_every_line() -> None:
    """Negative control: 16 lines fail, 15 pass, a one-liner is one line."""
    inner = "\n".join(f"line {i}" for i in range(13))
    fifteen = f'"""Summary.\n{inner}\n"""\n\nX = 1\n'
    sixteen = f'"""Summary.\n\n{inner}\n"""\n\nX = 1\n'
    assert docstring_lines(fifteen) == MAX_DOCSTRING_LINES
    assert docstring_lines(sixteen) == MAX_DOCSTRING_LINES + 1
    assert docstring_lines('"""One line."""\n') == 1
    assert docstring_lines("X = 1\n") == 0
