"""show_source: the real code of an rfcore function, as a notebook shows it under its formula."""

import inspect

import pytest

from rfcore.anchors import AnchorLevel
from rfcore.boxes import encode_boxes
from rfcore.viz.source import SourceCode, show_source


def test_the_plain_text_is_the_file_then_the_function_as_written():
    shown = show_source(encode_boxes)
    assert shown.path == "rfcore/boxes.py"
    assert repr(shown) == "# rfcore/boxes.py\n" + inspect.getsource(encode_boxes)
    assert repr(shown).splitlines()[1].startswith("def encode_boxes(boxes: torch.Tensor")


def test_a_method_is_shown_without_its_class_indentation():
    code = show_source(AnchorLevel.anchors).code
    assert code.startswith("def anchors(self")
    compile(code, "anchors", "exec")  # dedented code is valid Python on its own


def test_the_markdown_is_a_fenced_python_block_longer_than_any_backtick_run_inside():
    plain = SourceCode(path="x.py", code="def f(a):\n    return a < 1\n")
    assert plain._repr_markdown_() == "```python\n# x.py\ndef f(a):\n    return a < 1\n```\n"
    fenced = SourceCode(path="y.py", code='DOC = """````"""\n')
    assert fenced._repr_markdown_().startswith("`````python\n") and fenced._repr_markdown_().endswith("\n`````\n")


def test_an_object_without_source_is_a_clear_error():
    with pytest.raises(TypeError, match="show_source: <built-in function len> has no Python source"):
        show_source(len)
    with pytest.raises(TypeError, match="show_source: 3 has no Python source"):
        show_source(3)


def test_a_decorated_function_is_shown_from_its_own_file():
    from rfcore.model.fuse import fold_batch_norm  # decorated with @torch.no_grad()

    shown = show_source(fold_batch_norm)
    assert shown.path == "rfcore/model/fuse.py"
    assert "def fold_batch_norm(" in shown.code
