"""Plugins (fashionrec.registry): a module named in FASHIONREC_PLUGINS registers into the toolkit's registries;
one that cannot be imported, or fails while importing, is a one-line error naming it."""

import pytest

from fashionrec.data.formats import format_names
from fashionrec.errors import UserError
from fashionrec.registry import PLUGINS_ENV, Registry, load_plugins

PLUGIN = '''
from fashionrec.data.formats import DatasetFormat, register_format


@register_format
class Parquetish(DatasetFormat):
    name = "parquetish"

    def read_catalog(self, root):
        raise NotImplementedError
'''


def test_a_plugin_module_registers_and_a_broken_one_is_one_line(tmp_path, monkeypatch):
    package = tmp_path / "shop_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text(PLUGIN)
    (package / "twice.py").write_text(PLUGIN.replace("Parquetish", "Again"))  # the same name: the plugin's bug
    (package / "broken.py").write_text("raise RuntimeError('no licence file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from fashionrec.data.formats import FORMATS

    format_names()  # the built-in formats discovered first: the test's registrations end with it
    monkeypatch.setattr(FORMATS, "_things", FORMATS.registered())
    monkeypatch.setenv(PLUGINS_ENV, "shop_plugins.good")
    assert "parquetish" in format_names("catalog") and "parquetish" not in format_names("labelled")
    for module, words in (("shop_plugins.twice", "failed while importing: ValueError: dataset format 'parquetish' is "
                                                 "already registered"),
                          ("shop_plugins.broken", "failed while importing: RuntimeError: no licence file"),
                          ("shop_plugins.missing", "cannot import plugin module 'shop_plugins.missing'")):
        monkeypatch.setenv(PLUGINS_ENV, module)
        with pytest.raises(UserError, match=f"^{PLUGINS_ENV}: ") as e:
            load_plugins()
        assert words in str(e.value) and "\n" not in str(e.value)


def test_a_registry_names_unknown_entries_and_refuses_a_second_under_one_name():
    registry = Registry("widget")
    registry.register(object(), name="a")
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.register(object(), name="a")
    with pytest.raises(ValueError, match="^unknown widget 'b'; expected one of a$"):
        registry.get("b")
