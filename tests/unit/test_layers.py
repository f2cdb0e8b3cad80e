"""Imports run one way: ``handoff`` (the human side) builds on ``support``, never the reverse.

Checked on the real import graph (grimp parses every import statement, module-level and inside functions)
rather than by convention, so a new import that closes the cycle again fails here, naming the file and
line. Only the composition root knows both packages: it builds the handoff services and passes them into
the turn and the admin channels as ports (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import grimp
import pytest

# The composition root: the app factory, the runtime that builds every service, and the CLI's commands;
# ``switchboard eval`` builds its own isolated runtime (the routing policy, the examples) the same way.
COMPOSITION_ROOT = frozenset({"support.app", "support.runtime", "support.cli", "support.evaluation.service"})
# The services and everything under them: no chain of imports from these may reach handoff at all.
BELOW_THE_CHANNELS = ("support.conversation", "support.llm", "support.privacy", "support.db", "support.keys")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("support", "handoff", cache_dir=None)


def _is_handoff(module: str) -> bool:
    return module == "handoff" or module.startswith("handoff.")


def test_no_support_module_outside_the_composition_root_imports_handoff(graph: grimp.ImportGraph) -> None:
    offending = [
        f"{detail['importer']}:{detail['line_number']}: {detail['line_contents']}"
        for module in sorted(graph.modules)
        if module.split(".")[0] == "support" and module not in COMPOSITION_ROOT
        for imported in sorted(graph.find_modules_directly_imported_by(module))
        if _is_handoff(imported)
        for detail in graph.get_import_details(importer=module, imported=imported)
    ]
    assert offending == []


def test_the_composition_root_is_where_both_packages_meet(graph: grimp.ImportGraph) -> None:
    # The runtime builds the handoff services: if it stopped importing handoff, the root named above
    # would be stale and the check above would exempt modules for no reason.
    assert any(_is_handoff(m) for m in graph.find_modules_directly_imported_by("support.runtime"))
    assert graph.chain_exists("handoff.service", "support.conversation.store")


@pytest.mark.parametrize("layer", BELOW_THE_CHANNELS)
def test_the_services_and_below_reach_handoff_by_no_chain_of_imports(
    graph: grimp.ImportGraph, layer: str
) -> None:
    chain = graph.find_shortest_chain(importer=layer, imported="handoff", as_packages=True)
    assert chain is None, " -> ".join(chain or ())
