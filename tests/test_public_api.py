"""The public API is declared once, sorted, and everything in it exists."""

from __future__ import annotations

import importlib

import orchestrator


def test_all_is_sorted_and_unique() -> None:
    names = orchestrator.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert len(names) == len(set(names))


def test_every_exported_name_exists_and_is_public() -> None:
    for name in orchestrator.__all__:
        assert hasattr(orchestrator, name), name
        assert not name.startswith("_")


def test_every_public_class_in_submodules_is_exported_or_documented_as_internal() -> None:
    exported = set(orchestrator.__all__)
    for module_name in (
        "plan",
        "dag",
        "tiers",
        "routing",
        "results",
        "verify",
        "engine",
        "run",
        "goal",
        "workflow",
        "models.base",
        "exceptions",
    ):
        module = importlib.import_module(f"orchestrator.{module_name}")
        for name in getattr(module, "__all__", []):
            if name[0].isupper() and name != "DEFAULT_TIERS":
                assert name in exported, f"orchestrator.{module_name}.{name} is not exported"


def test_package_ships_py_typed() -> None:
    from importlib.resources import files

    assert files("orchestrator").joinpath("py.typed").is_file()
