"""Mitogen's linear strategy, found where the project's ansible.cfg looks for strategies.

Mitogen (the `mitogen` package in requirements.txt) keeps one Python interpreter running on
each server for the whole play and runs modules in it, instead of starting a new Python (and
unpacking the module) through a new connection for every task. Its strategy must be named in
`strategy_plugins`, which takes a directory; the package lives inside the venv, whose path
differs from machine to machine, so this file stands for it. Set ANSIBLE_STRATEGY=linear to
run without Mitogen.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
