"""The README's examples, run as they are written there: the first sweep, and each python
block of "Testing a theoretical prediction" (every test function it defines is called;
hypothesis runs each under the active profile). And the README's shape: what the lab is and
its two commands first, links that resolve."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Testing a theoretical prediction"


def _blocks(section: str = SECTION) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    level = section.split(" ")[0]  # "##" or "###": the block ends at the next heading of that level or above
    end = min((i for i in (text.find("\n## ", start + len(section)),
                           text.find("\n### ", start + len(section)) if level == "###" else -1) if i >= 0),
              default=-1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


def test_the_section_has_three_examples():
    blocks = _blocks()
    assert len(blocks) == 3 and all("def test_" in b for b in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(3))
def test_readme_example(index):
    namespace: dict = {"__name__": f"readme_example_{index}"}
    exec(compile(_blocks()[index], f"README.md example {index + 1}", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    assert tests
    for test in tests:
        test()


def test_ci_runs_the_readme_test_command_in_a_fresh_environment():
    """.ci/run runs the README's test command exactly as written, inside a new virtual
    environment (so CI installs today's releases, as a new machine would)."""
    import re

    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    script = (repo / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert script[-1] == test_command
    body = "\n".join(script)
    assert "python3 -m venv" in body and 'source "$venv/bin/activate"' in body
    assert body.index("python3 -m venv") < body.index(test_command)


@pytest.mark.slow
def test_the_first_sweep_runs_as_written():
    (block,) = _blocks("## A first sweep")
    namespace: dict = {"__name__": "readme_first_sweep"}
    exec(compile(block, "README.md first sweep", "exec"), namespace)
    res, stack = namespace["res"], namespace["stack"]
    assert len(res) == 8 and stack.model.W.shape == (4, 5, 20)  # 4 seeds of W (m, n)
    assert namespace["result"].model.W.shape == (5, 20)


def test_the_readme_opens_with_what_the_lab_is_and_its_two_commands():
    head = README.read_text(encoding="utf-8").splitlines()[:15]
    text = "\n".join(head)
    assert "toylab is a JAX laboratory" in text
    assert 'python3 -m pip install -e ".[reproduce]" && toylab reproduce --quick' in head
    assert 'python3 -m pip install -e ".[test,flax,images]" && python3 -m pytest' in head



def test_the_main_commands_extra_installs_what_every_reproduction_requires():
    """The README's install of the main job names the reproduce extra; that extra lists the
    distribution of every package a reproduction declares in REQUIRES."""
    import importlib
    import tomllib

    import toylab.experiments as experiments

    extras = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = {re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower() for req in extras["reproduce"]}
    needed = {}
    for name, module in experiments.REPRODUCTIONS.items():
        needed.update(getattr(importlib.import_module(module), "REQUIRES", {}))
    assert {"blackjax", "scikit-learn"} <= set(needed.values())  # degeneracy's NUTS, the digits
    assert set(needed.values()) <= listed, set(needed.values()) - listed


@pytest.mark.parametrize("doc", ["README.md", "experiments/reproductions/README.md", "experiments/benchmarks/README.md"])
def test_relative_links_resolve(doc):
    repo = README.parent
    path = repo / doc
    text = path.read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        if file:
            assert (path.parent / file).exists(), (doc, target)
        elif anchor:
            assert anchor in anchors, (doc, target)


def test_a_family_of_ones_own_runs_as_written():
    import numpy as np

    from toylab.core import family as family_registry

    (block,) = _blocks("### A family of your own")
    namespace: dict = {"__name__": "readme_family"}
    try:
        exec(compile(block, "README.md family of your own", "exec"), namespace)
        res = namespace["res"]
        assert len(res) == 4
        clean = res.one(noise=0.0, seed=0)
        np.testing.assert_allclose(np.asarray(clean.model.w), np.arange(8), atol=0.05)  # the teacher, learned
        assert clean.metrics["mse"][-1] < 1e-2 < res.one(noise=1.0, seed=0).metrics["mse"][-1]
    finally:
        family_registry._REGISTRY.pop("teacher", None)  # leave the registry as it was


def test_the_readme_names_every_plot_function():
    import toylab.plots

    text = README.read_text(encoding="utf-8")
    start = text.index("### Plots")
    section = text[start:text.index("\n### ", start + 1)]
    named = set(re.findall(r"`([a-z_]+)`", section))
    assert set(toylab.plots.__all__) <= named, sorted(set(toylab.plots.__all__) - named)
