"""engine/filters/loader.py: the filter module allow list, checked before anything is imported."""

from __future__ import annotations

import sys

import pytest

from engine.filters.loader import CLI_HINT, FilterModuleError, FilterModules, modules_of
from engine.policy import check_data


def config(*pythons: str):
    filters = [{"name": f"f{i}", "python": p} for i, p in enumerate(pythons)]
    result = check_data({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["r"]}],
        "routes": [{"name": "r", "match": {"path_prefix": "/"}, "filters": [f["name"] for f in filters],
                    "direct_response": {"status": 200, "body": "x"}}],
        "filters": filters,
    })
    return result.raise_for_errors()


def test_the_list_is_the_starting_configs_modules_plus_the_extra_ones():
    allowed = FilterModules.at_start(config("engine.filters.base:Filter"), ["json"])
    assert allowed.modules == {"engine.filters.base", "json"}
    assert modules_of(config("a.b:C", "a.b:D", "x:Y")) == {"a.b", "x"}


def test_every_filter_off_the_list_is_reported_with_its_path():
    allowed = FilterModules.at_start(config("engine.filters.base:Filter"))
    problems = allowed.problems(config("engine.filters.base:Filter", "subprocess:Popen", "os:system"))
    assert [(p.where, p.reason) for p in problems] == [
        ("filters[1].python", f"module 'subprocess' is not in the filter module allow list ({CLI_HINT})"),
        ("filters[2].python", f"module 'os' is not in the filter module allow list ({CLI_HINT})"),
    ]
    assert allowed.problems(config("subprocess:Popen"), provided=["f0"]) == []   # not imported


def test_a_module_off_the_list_is_refused_before_it_is_imported():
    name = "sluice_never_imported_module"
    with pytest.raises(FilterModuleError, match="not in the filter module allow list"):
        FilterModules(()).load_class(0, f"{name}:F")
    assert name not in sys.modules


def test_an_allowed_name_must_be_a_filter_subclass():
    allowed = FilterModules(["subprocess", "engine.filters.base", "json"])
    with pytest.raises(FilterModuleError, match=r"filters\[3\]\.python: 'subprocess:Popen' is not "
                                                r"a subclass of engine.Filter"):
        allowed.load_class(3, "subprocess:Popen")
    with pytest.raises(FilterModuleError, match="'json:dumps' is not a subclass"):
        allowed.load_class(0, "json:dumps")                  # not even a class
    with pytest.raises(FilterModuleError, match="module 'json' has no 'Nope'"):
        allowed.load_class(0, "json:Nope")
    from engine.filters.base import Filter
    assert allowed.load_class(0, "engine.filters.base:Filter") is Filter


@pytest.fixture
def isolated_imports():
    """Undo what a test imports and the finders it installs."""
    modules, meta_path = set(sys.modules), list(sys.meta_path)
    yield
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.meta_path[:] = meta_path


def test_the_config_directory_is_searched_first_for_allowed_modules_only(tmp_path, monkeypatch,
                                                                         isolated_imports):
    beside = tmp_path / "beside"
    (beside / "sluicetestpkg").mkdir(parents=True)
    (beside / "sluicetestpkg" / "__init__.py").write_text("")
    (beside / "sluicetestpkg" / "filters.py").write_text(
        "import engine\nclass F(engine.Filter):\n    where = 'beside'\n")
    (beside / "sluicetestshadow.py").write_text("raise RuntimeError('imported from beside')\n")
    on_path = tmp_path / "on_path"
    (on_path / "sluicetestpkg").mkdir(parents=True)
    (on_path / "sluicetestpkg" / "__init__.py").write_text("raise RuntimeError('sys.path won')\n")
    (on_path / "sluicetestshadow.py").write_text("value = 'from sys.path'\n")
    monkeypatch.syspath_prepend(str(on_path))
    allowed = FilterModules(["sluicetestpkg.filters"], directory=str(beside))
    assert allowed.load_class(0, "sluicetestpkg.filters:F").where == "beside"
    assert str(beside) not in sys.path
    import sluicetestshadow      # not an allowed module: the directory is not searched for it
    assert sluicetestshadow.value == "from sys.path"


def test_any_exception_importing_a_filter_module_names_the_field(tmp_path, monkeypatch,
                                                                 isolated_imports):
    (tmp_path / "sluicetestbroken.py").write_text("def f(:\n")
    allowed = FilterModules(["sluicetestbroken"], directory=str(tmp_path))
    with pytest.raises(FilterModuleError, match=r"filters\[2\]\.python: importing module "
                                                r"'sluicetestbroken' raised SyntaxError"):
        allowed.load_class(2, "sluicetestbroken:F")
