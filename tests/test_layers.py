"""The package's import graph, drawn from the code: no cycles, and layers import only downwards.

The layer order is the one stated in the package docstring (``avatarme_edu/__init__.py``). Every
``import`` statement counts, function-local ones and ``TYPE_CHECKING`` blocks included: a cycle
hidden inside a function is still a cycle.
"""

import ast
import re
from pathlib import Path

import pytest

import avatarme_edu

ROOT = Path(avatarme_edu.__file__).resolve().parent
PACKAGE = "avatarme_edu"


def layer_table(doc: str) -> dict[str, int]:
    """``{subpackage or module name: layer}`` from the docstring's lines ``N  name, name: what``."""
    table = {}
    for number, names in re.findall(r"^\s+(\d+)\s+([a-z_]+(?:, [a-z_]+)*):", doc, flags=re.M):
        for name in names.split(", "):
            table[name] = int(number)
    return table


def module_names(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` (at ``path``) imports, anywhere in its code."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule when there is one, else a name from pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a name inside a module
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def group_of(module: str) -> str:
    """The subpackage a module belongs to, or the module's own name for a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str, table: dict[str, int], subpackages: set[str]) -> int:
    group = group_of(module)
    if group in table:
        return table[group]
    if group in subpackages:
        raise AssertionError(f"subpackage {group!r} has no layer: add it to the list in avatarme_edu/__init__.py")
    return 0  # a top-level module not listed is a base module


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def upward_imports(graph, table, subpackages) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, table, subpackages)
        for target in sorted(targets):
            theirs = layer_of(target, table, subpackages)
            if theirs > mine:
                bad.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    return bad


def subpackage_graph(graph) -> dict[str, set[str]]:
    out = {}
    for module, targets in graph.items():
        src = group_of(module) or "<root>"
        out.setdefault(src, set()).update(group_of(t) or "<root>" for t in targets if group_of(t) != group_of(module))
    return out


# ---------------------------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def graph():
    return import_graph()


@pytest.fixture(scope="module")
def table():
    return layer_table(avatarme_edu.__doc__)


def test_the_docstring_states_every_subpackage_in_one_order(table):
    subpackages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert subpackages <= set(table), f"layers missing for {sorted(subpackages - set(table))}"
    assert table["base"] == 0 and table["geometry"] < table["optics"] < table["render"] < table["lightstage"]


def test_no_module_imports_a_higher_layer(graph, table):
    subpackages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert upward_imports(graph, table, subpackages) == []


def test_no_import_cycle_between_subpackages(graph):
    assert find_cycle(subpackage_graph(graph)) is None


def test_no_import_cycle_between_modules(graph):
    assert find_cycle(graph) is None


def test_the_graph_sees_function_local_imports(graph):
    # the cli imports the light stage inside its command functions only
    assert "avatarme_edu.profiles" in graph["avatarme_edu"]
    assert any(t.startswith("avatarme_edu.lightstage") for t in graph["avatarme_edu.cli"])


def test_the_pipeline_sits_above_every_stage_and_below_the_programs(graph, table):
    # reconstruct joins the fit, the networks, the head completion and the renderer; the cli calls it
    for name in ("pipeline", "pipeline_io", "end_to_end"):
        assert table[name] > max(table["fitting"], table["stages"], table["completion"], table["render"]), name
        assert table[name] < table["cli"], name
    assert {"avatarme_edu.fitting.fit", "avatarme_edu.stages", "avatarme_edu.completion.transfer"} <= graph[
        "avatarme_edu.pipeline"]
    assert "avatarme_edu.pipeline_io" in graph["avatarme_edu.cli"]
    # the package's front door (avatarme_edu.reconstruct) is looked up at run time, not imported
    assert "avatarme_edu.pipeline" not in graph["avatarme_edu"]


def test_every_subpackage_has_a_public_face():
    import importlib

    for init in sorted(ROOT.glob("*/__init__.py")):
        package = importlib.import_module(f"{PACKAGE}.{init.parent.name}")
        names = getattr(package, "__all__", None)
        assert names, f"{package.__name__} lists no public names in __all__"
        for name in names:
            obj = getattr(package, name)  # every listed name is there...
            home = getattr(obj, "__module__", package.__name__)
            assert home.startswith(package.__name__), f"{package.__name__}.{name} lives in {home}"  # ...and at home
    from avatarme_edu.lightstage import make_dataset, make_subject, wild_texture  # the example

    assert callable(make_subject) and callable(wild_texture) and callable(make_dataset)


@pytest.mark.slow
def test_importing_a_subpackage_loads_none_of_its_modules_and_python_m_runs_a_module_once():
    import subprocess
    import sys

    code = ("import sys, avatarme_edu.lightstage, avatarme_edu.geometry, avatarme_edu.figures; "
            "print(sorted(m for m in sys.modules if m.count('.') > 1 and m.startswith('avatarme_edu.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    run = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "avatarme_edu.lightstage.dataset",
                          "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "usage" in run.stdout, run.stderr


# ---------------------------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "avatarme_edu" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "avatarme_edu"


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from avatarme_edu.high import b\n",
        "high/__init__.py": "",
        "high/b.py": "from avatarme_edu.low.a import f\n",
    })
    g = import_graph(root)
    assert g["avatarme_edu.low.a"] == {"avatarme_edu.high.b"}
    assert find_cycle(g) is not None
    assert find_cycle(subpackage_graph(g)) is not None
    table = {"base": 0, "low": 1, "high": 2}
    assert upward_imports(g, table, {"low", "high"}) == [
        "avatarme_edu.low.a (layer 1) imports avatarme_edu.high.b (layer 2)"]


def test_checker_resolves_relative_and_package_imports(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "util.py": "",
        "pkg/__init__.py": "from .mod import x\n",
        "pkg/mod.py": "from .. import util\nfrom avatarme_edu.pkg import other\nx = 1\n",
        "pkg/other.py": "import avatarme_edu.util as u\n",
    })
    g = import_graph(root)
    assert g["avatarme_edu.pkg"] == {"avatarme_edu.pkg.mod"}
    assert g["avatarme_edu.pkg.mod"] == {"avatarme_edu.util", "avatarme_edu.pkg.other"}
    assert g["avatarme_edu.pkg.other"] == {"avatarme_edu.util"}
    assert find_cycle(g) is None


def test_layer_table_reads_the_docstring_format():
    doc = "x\n\n    0  base: a, b\n    3  render: c\n    7  demo, cli: d\n"
    assert layer_table(doc) == {"base": 0, "render": 3, "demo": 7, "cli": 7}
