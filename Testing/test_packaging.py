"""Packaging checks for the Slicer modules, runnable without Slicer.

Slicer only installs the files a module's CMakeLists.txt names, so a file that is missing
there works in the source tree and breaks in the built extension. These tests compare the
folders with the CMake lists, the .ui files with the code that uses them, and the
parameter-node bindings with the parameter classes.
"""

import ast
import fnmatch
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["PastaSlicer", "PastaSegment", "PastaSynth"]


# -- helpers --------------------------------------------------------------------------------


def assert_all_in(expected, actual, what):
    """Fail listing every element of ``expected`` missing from ``actual``."""
    missing = sorted(set(expected) - set(actual))
    assert not missing, f"{what}: {missing}"


def cmake_source(path):
    """CMake text without comments, with ``${MODULE_NAME}`` expanded."""
    text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
    match = re.search(r"set\(\s*MODULE_NAME\s+(\S+?)\s*\)", text)
    if match:
        text = text.replace("${MODULE_NAME}", match.group(1))
    return text


BUILD_MACRO = ROOT / "CMake" / "PastaMacroBuildScriptedModule.cmake"


def module_build(module):
    """The CMake that builds ``module``: its CMakeLists.txt, which must hand its scripts to
    ``pastaMacroBuildScriptedModule``, followed by that macro's body for this module."""
    text = cmake_source(ROOT / module / "CMakeLists.txt")
    call = r"pastaMacroBuildScriptedModule\(\s*NAME\s+" + module + r"\s+SCRIPTS\s+\$\{MODULE_PYTHON_SCRIPTS\}\s*\)"
    assert re.search(call, text), f"{module}/CMakeLists.txt does not call pastaMacroBuildScriptedModule(NAME {module} ...)"
    macro = re.search(r"macro\(\s*pastaMacroBuildScriptedModule\s*\)(.*?)endmacro\(", cmake_source(BUILD_MACRO), re.S)
    assert macro, f"{BUILD_MACRO.name} defines no pastaMacroBuildScriptedModule"
    return text + macro.group(1).replace("${PASTA_MODULE_NAME}", module)


def cmake_set_items(text, variable):
    match = re.search(r"set\(\s*" + variable + r"\b(.*?)\)", text, re.S)
    assert match, f"set({variable} ...) not found"
    return match.group(1).split()


def glob_recurse_patterns(text):
    """Patterns of ``file(GLOB_RECURSE var RELATIVE dir [CONFIGURE_DEPENDS] patterns...)``,
    relative to the module folder."""
    patterns = []
    for body in re.findall(r"file\(\s*GLOB_RECURSE\s+(.*?)\)", text, re.S):
        words = body.split()[1:]  # drop the variable name
        for i, word in enumerate(words):
            if word == "RELATIVE":
                continue
            if i > 0 and words[i - 1] == "RELATIVE":
                continue
            if word in ("CONFIGURE_DEPENDS", "FOLLOW_SYMLINKS", "LIST_DIRECTORIES", "true", "false"):
                continue
            patterns.append(word.replace("${CMAKE_CURRENT_SOURCE_DIR}/", ""))
    return patterns


def glob_recurse_matches(pattern, relative_path):
    """CMake GLOB_RECURSE semantics: ``dir/*.py`` matches ``*.py`` files at any depth under dir."""
    directory, _, name_pattern = pattern.rpartition("/")
    path = relative_path.as_posix()
    if directory and not path.startswith(directory + "/"):
        return False
    return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], name_pattern)


def module_files(module, suffix=None, under=""):
    base = ROOT / module / under
    files = [p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    if suffix:
        files = [p for p in files if p.suffix == suffix]
    return [p.relative_to(ROOT / module) for p in files]


def python_sources(module):
    """The module file and its Slicer-side Lib package (not the Qt-free core)."""
    paths = [ROOT / module / f"{module}.py"]
    lib = ROOT / module / f"{module}Lib"
    if lib.is_dir():
        paths += sorted(lib.rglob("*.py"))
    return paths


def parameter_fields(module):
    tree = ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", None) for d in node.decorator_list}
            names |= {getattr(d.func, "id", None) for d in node.decorator_list if isinstance(d, ast.Call)}
            if "parameterNodeWrapper" in names:
                return node.name, {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError(f"{module}.py has no @parameterNodeWrapper class")


def ui_tree(module):
    return ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path} has no IHDR chunk first"
    return struct.unpack(">II", data[16:24])


# -- per module -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_every_python_file_is_packaged(module):
    text = cmake_source(ROOT / module / "CMakeLists.txt")
    listed = set(cmake_set_items(text, "MODULE_PYTHON_SCRIPTS"))
    patterns = glob_recurse_patterns(text)
    unlisted = [
        p.as_posix()
        for p in module_files(module, ".py")
        if p.as_posix() not in listed and not any(glob_recurse_matches(pat, p) for pat in patterns)
    ]
    assert not unlisted, f"{module}/CMakeLists.txt does not package: {unlisted}"
    assert_all_in(listed, {p.as_posix() for p in module_files(module, ".py")}, f"{module}/CMakeLists.txt lists missing files")


def test_pastacore_glob_covers_the_core():
    text = cmake_source(ROOT / "PastaSlicer" / "CMakeLists.txt")
    patterns = glob_recurse_patterns(text)
    core = module_files("PastaSlicer", ".py", under="pastacore")
    assert core, "no pastacore sources found"
    assert patterns, "PastaSlicer/CMakeLists.txt has no GLOB_RECURSE for pastacore"
    uncovered = [p.as_posix() for p in core if not any(glob_recurse_matches(pat, p) for pat in patterns)]
    assert not uncovered, f"the GLOB_RECURSE patterns {patterns} miss {uncovered}"
    assert not glob_recurse_matches(patterns[0], Path("PastaSlicerLib/worker.py"))


@pytest.mark.parametrize("module", MODULES)
def test_every_resource_is_packaged(module):
    text = module_build(module)
    listed = cmake_set_items(text, "MODULE_PYTHON_RESOURCES")
    present = [p.as_posix() for p in module_files(module, under="Resources")]
    assert_all_in(present, listed, f"{module}/CMakeLists.txt does not package")
    assert_all_in(listed, present, f"{module}/CMakeLists.txt lists missing resources")
    assert re.search(r"slicerMacroBuildScriptedModule\(\s*NAME\s+" + module + r"\s.*WITH_GENERIC_TESTS", text, re.S)
    assert re.search(r"if\(BUILD_TESTING\).*slicer_add_python_unittest\(\s*SCRIPT\s+" + module + r"\.py\s*\)", text, re.S)


@pytest.mark.parametrize("module", MODULES)
def test_ui_is_designer_xml_with_the_widgets_the_code_uses(module):
    root = ui_tree(module).getroot()
    assert root.tag == "ui" and root.get("version") == "4.0"
    top = root.find("widget")
    assert top is not None and top.get("class") == "qMRMLWidget" and top.get("name") == module
    widgets = {w.get("name") for w in root.iter("widget")}
    used = set()
    for path in python_sources(module):
        used |= set(re.findall(r"self\.ui\.(\w+)", path.read_text(encoding="utf-8")))
    assert used, f"{module} code does not use self.ui"
    assert_all_in(used, widgets, f"widgets used by {module} code but missing from {module}.ui")

    custom = {c.findtext("class") for c in root.iter("customwidget")}
    classes = {w.get("class") for w in root.iter("widget")}
    assert_all_in({c for c in classes if not c.startswith("Q")}, custom, f"{module}.ui lacks customwidgets entries")

    combos = [w for w in root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"]
    connected = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("sender") == module
        and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    for combo in combos:
        types = [s.text for p in combo.findall("property") if p.get("name") == "nodeTypes" for s in p.iter("string")]
        assert types, f"{combo.get('name')} has no nodeTypes"
    assert_all_in({c.get("name") for c in combos}, connected, f"{module}.ui node selectors without setMRMLScene connection")


@pytest.mark.parametrize("module", MODULES)
def test_ui_bindings_are_parameters(module):
    _, fields = parameter_fields(module)
    bound = [p.findtext("string") for p in ui_tree(module).getroot().iter("property") if p.get("name") == "SlicerParameterName"]
    assert bound, f"{module}.ui binds no widget to the parameter node"
    assert_all_in(bound, fields, f"{module}.ui binds to parameters the parameter node class lacks")
    assert len(bound) == len(set(bound)), f"{module}.ui binds a parameter twice"


@pytest.mark.parametrize("module", MODULES)
def test_module_python_parses_as_310_with_the_expected_classes(module):
    for path in python_sources(module):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))
    tree = ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert_all_in(
        {module, f"{module}Widget", f"{module}Logic", f"{module}Test", f"{module}ParameterNode"},
        classes,
        f"{module}.py lacks classes",
    )
    # heavy or core imports belong inside functions; the shared base classes are needed at class definition
    assert_all_in(top_level_imports(tree), SLICER_FRAMEWORK | {MODULE_BASE}, f"{module}.py imports at module level")


def test_the_shared_module_base_imports_only_the_slicer_framework():
    """The module files import it when Slicer discovers them: it, and the packages it sits in, import nothing heavy."""
    lib = ROOT / "PastaSlicer" / "PastaSlicerLib"
    for path in (lib / "__init__.py", lib / "gui" / "__init__.py", lib / "gui" / "module_base.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert_all_in(top_level_imports(tree), SLICER_FRAMEWORK | {"traceback"}, f"{path.name} imports at module level")


SLICER_FRAMEWORK = {"logging", "os", "pathlib", "typing", "vtk", "qt", "ctk", "slicer"}
MODULE_BASE = "PastaSlicerLib.gui.module_base"


def top_level_imports(tree):
    """What a module imports when it is loaded: the top-level package of each import, but the
    whole name of an import of the shared module base classes."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names.append(module if module == MODULE_BASE else module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "icon", [Path("Resources/Icons/PastaSlicer.png")] + [Path(m) / "Resources" / "Icons" / f"{m}.png" for m in MODULES], ids=str
)
def test_icons_are_128px_pngs(icon):
    assert png_size(ROOT / icon) == (128, 128)


# -- extension ------------------------------------------------------------------------------


def test_top_level_cmake():
    text = cmake_source(ROOT / "CMakeLists.txt")
    for module in MODULES:
        assert re.search(r"add_subdirectory\(\s*" + module + r"\s*\)", text), f"add_subdirectory({module}) missing"
    depends = re.search(r'set\(\s*EXTENSION_DEPENDS\s+"?([^")]*)"?\s*\)', text)
    assert depends and "PyTorch" in depends.group(1).split()
    assert re.search(r"find_package\(\s*Slicer\s+REQUIRED", text)
    assert "include(${Slicer_USE_FILE})" in text
    assert "include(${Slicer_EXTENSION_GENERATE_CONFIG})" in text
    assert "include(${Slicer_EXTENSION_CPACK})" in text
    assert "PastaResources" in text
    include = text.index("include(${CMAKE_CURRENT_SOURCE_DIR}/CMake/" + BUILD_MACRO.name + ")")
    assert include < text.index("add_subdirectory("), "the module build macro is included after the modules"


def test_requirements_use_lower_bounds_only():
    from pastacore import deps

    requirements = [f"{name}{spec}" for name, spec, _ in deps.requirements()]
    assert requirements
    for requirement in requirements:
        assert re.fullmatch(r"[A-Za-z0-9._-]+>=[0-9][0-9.]*", requirement), requirement


def test_pyproject_lists_every_core_package():
    """A wheel built from pyproject.toml must contain every subpackage of pastacore."""
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(pastacore[\w.]*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    core = ROOT / "PastaSlicer" / "pastacore"
    found = {
        "pastacore" + ("." + ".".join(p.parent.relative_to(core).parts) if p.parent != core else "")
        for p in core.rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, sorted(found - listed)


def test_extension_urls_point_at_files_of_the_repository():
    text = (ROOT / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        url = re.search(key + r'\s+"([^"]+)"', text).group(1)
        for single in url.split():
            path = single.split("/main/", 1)[1]
            assert (ROOT / path).is_file(), f"{key} points at {path}, which is not in the repository"


def test_every_device_choice_in_the_modules_is_the_core_list():
    """A parameter-node Choice needs a literal list; each one must equal pastacore.deps.DEVICES."""
    import ast

    from pastacore.deps import DEVICES

    found = 0
    for module in MODULES:
        for path in python_sources(module):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                literal = None
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Choice" and node.args:
                    literal = node.args[0]
                elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DEVICE_CHOICES" for t in node.targets):
                    literal = node.value
                if isinstance(literal, ast.List) and "cpu" in [getattr(e, "value", None) for e in literal.elts]:
                    assert tuple(e.value for e in literal.elts) == DEVICES, f"{path.name}:{node.lineno}"
                    found += 1
    assert found >= 2  # the hub's DEVICE_CHOICES and PASTA Segment's device
