"""Find the scenario scripts and describe their parameters.

A scenario is a script in the ``scenarios/`` folder that defines
``build_parser()`` (an :class:`argparse.ArgumentParser`: every parameter with
its type, default, help and validation, in one place) and ``main(argv)``.
This module lists them, reads their parameters off the parser, turns
``key=value`` settings into the script's own arguments (so the script's
validation applies) and runs them in-process.

The folder is ``$DYNSIM_SCENARIOS`` if set, else the ``scenarios/`` folder
beside the installed ``dynsim`` package (a source checkout).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from dynsim.validation import DynsimError

__all__ = ["ScenarioError", "Parameter", "Scenario", "scenario_folder", "list_scenarios", "find_scenario",
           "parse_settings"]


class ScenarioError(DynsimError):
    """An unknown scenario or parameter, or a malformed setting; the message lists what is allowed."""


@dataclass(frozen=True)
class Parameter:
    """One scenario parameter, read off the scenario's argparse parser."""

    name: str
    flag: str
    type: str
    default: object
    help: str
    choices: tuple | None
    is_switch: bool

    def describe(self):
        allowed = f" (one of {', '.join(map(str, self.choices))})" if self.choices else ""
        return f"{self.name} [{self.type}, default {self.default!r}]{allowed}: {self.help}"


def scenario_folder():
    """The folder holding the scenario scripts."""
    env = os.environ.get("DYNSIM_SCENARIOS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "scenarios"


def _docstring_summary(path):
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except (SyntaxError, OSError):
        return ""
    return (doc or "").strip().split("\n")[0]


@dataclass
class Scenario:
    """A scenario script: its name, file and one-line description."""

    name: str
    path: Path
    description: str

    def module(self):
        """Import the script as a module (not as ``__main__``: its ``main`` is not run)."""
        spec = importlib.util.spec_from_file_location(f"dynsim_scenario_{self.name}", self.path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for attr in ("build_parser", "main"):
            if not callable(getattr(module, attr, None)):
                raise ScenarioError(f"scenario {self.name!r} ({self.path.name}) defines no {attr}(): "
                                    "a scenario needs build_parser() and main(argv)")
        return module

    def parser(self):
        return self.module().build_parser()

    def parameters(self):
        """The scenario's parameters, in the parser's order (help excluded)."""
        params = []
        for action in self.parser()._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            kind = "switch" if switch else getattr(action.type, "__name__", "str") if action.type else "str"
            params.append(Parameter(name=action.dest, flag=action.option_strings[-1], type=kind,
                                    default=action.default, help=(action.help or "").replace("%(default)s", ""),
                                    choices=tuple(action.choices) if action.choices else None, is_switch=switch))
        return params

    def argv(self, settings):
        """The script's arguments for ``{parameter name: value text}``; unknown names are an error."""
        params = {p.name: p for p in self.parameters()}
        argv = []
        for name, value in settings.items():
            key = name.replace("-", "_")
            if key not in params:
                raise ScenarioError(f"scenario {self.name!r} has no parameter {name!r}; its parameters are: "
                                    + ", ".join(sorted(params)))
            param = params[key]
            if param.is_switch:
                truth = str(value).strip().lower()
                if truth not in ("true", "false", "1", "0", "yes", "no"):
                    raise ScenarioError(f"parameter {name!r} is a switch: give true or false, got {value!r}")
                if truth in ("true", "1", "yes"):
                    argv.append(param.flag)
            else:
                argv += [param.flag, str(value)]
        return argv

    def run(self, argv):
        """Run the scenario in this process with the script arguments ``argv``; returns its exit status."""
        return self.module().main(list(argv)) or 0


def list_scenarios():
    """Every scenario in :func:`scenario_folder`, sorted by name."""
    folder = scenario_folder()
    if not folder.is_dir():
        raise ScenarioError(f"no scenario folder at {str(folder)!r}: set DYNSIM_SCENARIOS to the folder of the "
                            "scenario scripts")
    return [Scenario(p.stem, p, _docstring_summary(p)) for p in sorted(folder.glob("*.py"))
            if not p.name.startswith("_")]


def find_scenario(name_or_path):
    """A scenario by name (from :func:`list_scenarios`) or by the path of a script."""
    path = Path(name_or_path)
    if path.suffix == ".py":
        if not path.is_file():
            raise ScenarioError(f"no scenario script at {str(path)!r}")
        return Scenario(path.stem, path.resolve(), _docstring_summary(path))
    scenarios = {s.name: s for s in list_scenarios()}
    if name_or_path not in scenarios:
        raise ScenarioError(f"unknown scenario {name_or_path!r}; the scenarios are: {', '.join(scenarios)}")
    return scenarios[name_or_path]


def parse_settings(items):
    """``['beta=0.5', 'integrator=dopri5']`` -> ``{'beta': '0.5', 'integrator': 'dopri5'}``."""
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"a setting must look like key=value, got {item!r}")
        settings[key.strip()] = value.strip()
    return settings
