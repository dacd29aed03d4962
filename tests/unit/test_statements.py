"""The statements of metadata/: each a named object in its resource's module, called
with exactly the parameters its text names, in the same on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import registry.metadata
from registry.metadata import manifests, uploads
from registry.metadata.statements import Statement


def declared() -> dict[str, Statement]:
    found: dict[str, Statement] = {}
    for info in pkgutil.iter_modules(registry.metadata.__path__):
        module = importlib.import_module(f"registry.metadata.{info.name}")
        for attribute, value in vars(module).items():
            if isinstance(value, Statement):
                found[f"{info.name}.{attribute}"] = value
    return found


def test_every_statement_has_a_name_of_its_own_and_one_set_of_parameters() -> None:
    statements = declared()
    assert len(statements) >= 30, sorted(statements)  # uploads, blobs, manifests, tags...
    names = [s.name for s in statements.values()]
    assert len(names) == len(set(names)), names  # the label of its metrics
    for where, statement in statements.items():
        given = {**dict.fromkeys(statement.parameters), "now": None}
        sqlite, postgres = (statement.compiled(postgres, given) for postgres in (False, True))
        assert len(sqlite[1]) == sqlite[0].count("?"), where
        assert len(postgres[1]) == postgres[0].count("$"), where


def test_a_statement_is_called_with_exactly_the_parameters_its_text_names() -> None:
    step = uploads.HOLDER(id="u1")
    assert step == (uploads.HOLDER, {"id": "u1"})
    with pytest.raises(TypeError, match=r"upload_holder takes \['id'\], given \['uid'\]"):
        uploads.HOLDER(uid="u1")
    with pytest.raises(TypeError, match="manifest_by_tag takes"):
        manifests.BY_TAG(repository="team/app")  # no tag
    # `:now` is the runner's: the transaction's moment, not a caller's.
    with pytest.raises(TypeError, match="delete_upload takes"):
        uploads.DELETE(id="u1", now=None)


def test_the_positional_forms_keep_the_order_of_the_parameters() -> None:
    text, values = manifests.BY_DIGEST.compiled(True, {"repository": "r", "digest": "d"})
    assert "r.name = $1 AND m.digest = $2" in text and values == ["r", "d"]
    text, values = manifests.BY_DIGEST.compiled(False, {"repository": "r", "digest": "d"})
    assert "r.name = ? AND m.digest = ?" in text and values == ["r", "d"]
