"""`library search` through main(): the composer's retriever (real embedder, offline) over a
small library, as a table for people and JSON for scripts."""

import json

import pytest

from composer.cli import main
from composer.config import Settings
from composer.services import Services
from tests.support_pipeline import LIBRARY, png_bytes


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One data directory for the module: the default library is seeded (and read) once."""
    home = tmp_path_factory.mktemp("search") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPOSER_HOME", str(home))
        patch.delenv("DATABASE_URL", raising=False)
        services = Services(Settings.from_env())
        for number, (caption, color) in enumerate(LIBRARY):
            services.images.add(png_bytes(color), caption=caption, allow_near_duplicate=True,
                                source="camera" if number % 2 else "archive",
                                license="CC0" if number < 3 else "CC BY 4.0",
                                attribution="Test Suite")
        services.db.dispose()
        yield home


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_search_prints_ranked_images_as_a_table_and_as_json(home, capsys):
    code, table, stderr = run(capsys, "library", "search", "a lighthouse on the coast")
    assert code == 0, stderr
    header, *rows = table.strip().splitlines()
    assert header.split() == ["#", "score", "id", "license", "source", "caption"]
    assert len(rows) == len(LIBRARY) and rows[0].split()[0] == "1"
    assert rows[0].endswith("a red lighthouse on a rocky cliff")
    scores = [float(row.split()[1]) for row in rows]
    assert scores == sorted(scores, reverse=True)

    code, out, stderr = run(capsys, "library", "search", "a lighthouse on the coast",
                            "--json", "--k", "3")
    assert code == 0, stderr
    results = json.loads(out)
    assert [r["rank"] for r in results] == [1, 2, 3]
    assert results[0] == {"rank": 1, "score": results[0]["score"], "id": results[0]["id"],
                          "caption": "a red lighthouse on a rocky cliff", "license": "CC0",
                          "source": "camera", "attribution": "Test Suite"}
    assert results[0]["id"].startswith(rows[0].split()[2])  # the table's first row
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]


def test_search_filters_by_license_and_source(home, capsys):
    code, out, _ = run(capsys, "library", "search", "a harbor", "--json", "--license",
                       "CC BY 4.0")
    results = json.loads(out)
    assert code == 0 and len(results) == 3 and {r["license"] for r in results} == {"CC BY 4.0"}
    code, out, _ = run(capsys, "library", "search", "a harbor", "--json", "--source", "archive")
    assert code == 0 and {r["source"] for r in json.loads(out)} == {"archive"}
    code, out, err = run(capsys, "library", "search", "a harbor", "--source", "nowhere")
    assert code == 0 and out == "" and "No images match" in err
    code, out, err = run(capsys, "library", "search", "a harbor", "--json", "--source", "nowhere")
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize("argv, message", [
    (["  "], "the search description is empty"),
    (["a cat", "--k", "0"], "--k is 0; it must be between 1 and 100"),
])
def test_bad_search_input_exits_2_naming_the_value(home, capsys, argv, message):
    code, out, err = run(capsys, "library", "search", *argv)
    assert code == 2 and message in err and out == ""
