"""The README's Python example runs exactly as written."""
import contextlib
import io
import pathlib
import re


def test_readme_example():
    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"<!-- readme-python:begin -->\s*```python\n(.*?)```\s*<!-- readme-python:end -->", readme, re.S)
    assert block, "README.md has no python block between the readme-python markers"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), {})
    assert re.match(r"ErrorMetrics\(rel_fro=0\.\d+", out.getvalue()), out.getvalue()
