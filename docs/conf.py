"""Sphinx settings of the rfcore book: the saved notebooks (never executed here) and the API reference.

Build it with ``python tools/build_book.py`` (warnings are errors), which stages this folder with
``notebooks/`` inside it; the site lands in ``build/book/``.
"""

project = "rfcore"
author = "the rfcore authors"
release = version = "0.1.0"

extensions = [
    "myst_nb",  # reads .ipynb and .md (it loads myst_parser itself)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # Google-style docstrings
    "sphinx.ext.viewcode",  # each object's source, as the notebooks' show_source shows it
    "sphinx-mathjax-offline",  # MathJax served from the site itself, so formulas render without a network
]

root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
templates_path = ["_templates"]

# The notebooks are shown as committed, with their outputs: never run during the build.
nb_execution_mode = "off"
# The explorers' widget state is not saved with the notebooks, so show the still picture stored beside it.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "ignore-module-all": True, "member-order": "bysource"}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as a field list: autodoc documents the fields themselves

viewcode_follow_imported_members = False  # link each object to the module it is documented in

html_theme = "sphinx_book_theme"
html_title = "rfcore"
html_theme_options = {
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
}
