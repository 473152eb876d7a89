"""The structure the code promises: no import cycles, fast read-only commands, one source per
setting, one home for finished models, user errors as one line and bugs with their traceback."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fext import registry
from fext.config import (
    ClassifierConfig,
    DataConfig,
    ExtractConfig,
    ModelConfig,
    TrainConfig,
    describe,
    flag,
    options_table,
)
from tests.helpers import REPO

PACKAGE = REPO / "fext"


def internal_imports(path: Path) -> set[str]:
    """Modules of fext that `path` imports anywhere (module level or inside functions)."""
    module = path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            while name and not (REPO / (name.replace(".", "/") + ".py")).is_file():
                name = name.rpartition(".")[0]  # `from . import registry` names a module
            if name.startswith("fext") and name != module:
                found.add(name)
    return found


def test_no_import_cycle_in_the_package():
    graph = {p.relative_to(REPO).with_suffix("").as_posix().replace("/", "."): internal_imports(p)
             for p in PACKAGE.rglob("*.py")}
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("command", [["anomalies", "--name", "shapes", "--top", "2"],
                                     ["export", "--name", "shapes", "--csv", "OUT"],
                                     ["duplicates", "--name", "shapes", "--json"],
                                     ["scan", "--images", "IMAGES", "--image-size", "16"]])
def test_read_only_commands_never_import_keras_or_tensorflow(trained, shapes_dir, tmp_path, command):
    ws, _ = trained
    args = [str(tmp_path / "f.csv") if a == "OUT" else str(shapes_dir) if a == "IMAGES" else a
            for a in command] + ["--workspace", str(ws.root)]
    probe = ("import sys; from fext.cli import main; code = main(sys.argv[1:]); "
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow'));"
             "print('HEAVY', heavy, file=sys.stderr); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]


def test_every_setting_is_a_cli_option_with_the_dataclass_default():
    from fext.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    for command, classes in (("train", (DataConfig, ModelConfig, TrainConfig)),
                             ("build", (DataConfig, ModelConfig, TrainConfig)),
                             ("classify", (ClassifierConfig,)),
                             ("extract", (ExtractConfig,))):
        options = {a.dest: a for a in sub[command]._actions}
        for cls in classes:
            for f in describe(cls):
                assert f.name in options, (command, f.name)
                assert f.metadata["help"] in options[f.name].help, (command, f.name)
                if f.name != "images":
                    default = options[f.name].default
                    assert default == f.default, (command, f.name, default)
                    assert options[f.name].choices == f.metadata["choices"], (command, f.name)


def test_readme_option_lists_are_made_from_the_settings():
    from fext.config import options_table

    readme = (REPO / "README.md").read_text()
    assert options_table(DataConfig, ModelConfig, TrainConfig) in readme
    assert options_table(ClassifierConfig) in readme
    assert options_table(ExtractConfig) in readme


def test_cli_sets_noise_and_builds_configs_by_keyword(shapes_dir, tmp_path):
    from fext.cli import build_parser, settings

    args = build_parser().parse_args(["train", "--images", str(shapes_dir), "--name", "n",
                                      "--noise", "0.1", "--epochs", "2", "--val-fraction", "0.2"])
    assert settings(args, TrainConfig) == TrainConfig(epochs=2, noise=0.1)
    assert settings(args, DataConfig).val_fraction == 0.2


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    from fext import cli
    from fext.errors import UsageError

    def user_error(args, progress):
        raise UsageError("bad setting: use another")

    def bug(args, progress):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "scan", user_error)
    assert cli.main(["scan", "--images", "."]) == 1
    assert capsys.readouterr().err.strip() == "error: bad setting: use another"
    monkeypatch.setitem(cli.COMMANDS, "scan", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["scan", "--images", "."])


def test_no_module_reads_config_json_but_the_registry():
    readers = [p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py")
               if '"config.json"' in p.read_text() and p.name != "registry.py"]
    assert readers == []


def test_a_model_saved_before_the_registry_still_opens(trained, tmp_path):
    """config.json as earlier versions wrote it (no extras): opens, loads, lists."""
    import shutil

    from fext.workspace import Workspace

    ws, name = trained
    old = Workspace(tmp_path / "old")
    shutil.copytree(ws.model_dir(name), old.model_dir(name))
    record_file = old.model_dir(name) / "config.json"
    d = json.loads(record_file.read_text())
    d.pop("extras", None)
    record_file.write_text(json.dumps(d))
    record = registry.open_record(old, name)
    assert record.extras == {} and record.config.model.latent_dim == 8
    assert registry.names(old) == [name]
    model, again = registry.load(old, name)
    assert again == record and model.output.shape[1:] == (16, 16, 3)


def test_extras_are_stored_with_the_model_and_survive_reading(trained, tmp_path):
    import shutil

    from fext.workspace import Workspace

    ws, name = trained
    copy = Workspace(tmp_path / "copy")
    shutil.copytree(ws.model_dir(name), copy.model_dir(name))
    before = registry.open_record(copy, name).extras
    assert set(before) == {"reference", "readout", "maps"}  # what training stores with every model
    record = registry.update_extras(registry.open_record(copy, name), reference={"median": 0.5})
    assert registry.open_record(copy, name).extras == {**before, "reference": {"median": 0.5}} \
        == record.extras


SETTING_CLASSES = (DataConfig, ModelConfig, TrainConfig, ClassifierConfig, ExtractConfig)
RESTATERS = ["fext/cli.py", "fext/experiment.py", *sorted(
    p.relative_to(REPO).as_posix() for p in (PACKAGE / "ui").glob("*.py"))]


def restated_in_code(path: Path) -> list[str]:
    """Literal copies of a setting's choices (a tuple, list or set of its strings) and
    `default=` values equal to the default of the setting an option is named after."""
    choices = {frozenset(f.metadata["choices"]): f.name for cls in SETTING_CLASSES
               for f in describe(cls) if f.metadata["choices"]}
    defaults = {flag(f.name): f.default for cls in SETTING_CLASSES for f in describe(cls)}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            name = choices.get(frozenset(e.value for e in node.elts))
            if name:
                found.append(f"{path.name}:{node.lineno}: the choices of {name}")
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            option = node.args[0].value
            for kw in node.keywords:
                if (kw.arg == "default" and isinstance(kw.value, ast.Constant)
                        and option in defaults and kw.value.value == defaults[option]):
                    found.append(f"{path.name}:{node.lineno}: the default of {option}")
    return found


def restated_in_readme(text: str) -> list[str]:
    """Outside the option tables made from the settings: a setting's choices written out in
    order, or a line that names a setting's option, "default" and its default value."""
    for classes in ((DataConfig, ModelConfig, TrainConfig), (ClassifierConfig,), (ExtractConfig,)):
        text = text.replace(options_table(*classes), "")
    found = []
    for cls in SETTING_CLASSES:
        for f in describe(cls):
            choices = f.metadata["choices"]
            if choices and any(sep.join(choices) in text for sep in (", ", "|", " / ", " or ")):
                found.append(f"the choices of {flag(f.name)}")
            default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else str(f.default)
            for line in text.splitlines():
                if (f"`{flag(f.name)}" in line and "default" in line
                        and re.search(rf"(?<![\w.-]){re.escape(default)}(?![\w.])", line)):
                    found.append(f"the default of {flag(f.name)}: {line.strip()}")
    return found


def test_no_setting_default_or_choice_list_is_restated_in_code():
    """Each setting's default and choices live on its field in fext/config.py; the CLI, the
    pages and the experiment grid read them from there (a copy drifts when the setting moves)."""
    found = [hit for rel in RESTATERS for hit in restated_in_code(REPO / rel)]
    assert found == []


def test_the_restatement_check_finds_copies(tmp_path):
    copy = tmp_path / "copy.py"
    copy.write_text('p.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", '
                    '"ivfpq"])\np.add_argument("--top", default=20)\n')
    assert sorted(restated_in_code(copy)) == ["copy.py:1: the choices of index",
                                              "copy.py:1: the default of --index"]
    assert sorted(restated_in_readme("`--fit pad` (the default)\n[--scores all|isolation]")) == [
        "the choices of --scores", "the default of --fit: `--fit pad` (the default)"]


def test_no_setting_default_or_choice_list_is_restated_in_the_readme():
    assert restated_in_readme((REPO / "README.md").read_text()) == []


def test_every_bad_setting_value_gets_the_one_message_shape():
    """Each setting declares its choices or bounds (all but the image folder, which is checked
    on disk); `fext.config.check` answers any value outside them the same way, whichever
    config, command or page it came from."""
    from fext.errors import UsageError

    unchecked = []
    for cls in SETTING_CLASSES:
        for f in describe(cls):
            bounds, choices = f.metadata["bounds"], f.metadata["choices"]
            if choices:
                bad = "nope"
            elif "above" in bounds:
                bad = bounds["above"]  # the bound itself is outside an open interval
            elif "at_least" in bounds:
                bad = bounds["at_least"] - 1
            else:
                unchecked.append(f.name)
                continue
            cfg = cls(**{f.name: (bad,) if isinstance(f.default, tuple) else bad})
            with pytest.raises(UsageError) as e:
                cfg.validate(64) if cls is ModelConfig else cfg.validate()
            assert re.fullmatch(rf"{flag(f.name)} must be .+, got .+", str(e.value)), str(e.value)
    assert unchecked == ["images"]
