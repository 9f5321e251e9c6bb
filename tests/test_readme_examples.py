"""The README's "Testing a theoretical prediction" examples, run as they are written there:
each python block of that section is executed and every test function it defines is called
(hypothesis runs each under the active profile)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Testing a theoretical prediction"


def _blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


def test_the_section_has_three_examples():
    blocks = _blocks()
    assert len(blocks) == 3 and all("def test_" in b for b in blocks)


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
